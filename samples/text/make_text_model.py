"""Record the bundled default SentencePiece model from BabyAI's mission language.

    pip install -e ".[samples]"     # minigrid
    python samples/text/make_text_model.py

Resets every BabyAI level registered by minigrid under many seeds, writes the distinct
missions to `corpus.txt` (sorted, one per line) and trains `gato_text.model` on it with
the project's own `gato-train-sentencepiece` (byte fallback: any text still encodes and
decodes exactly, unseen words just take more tokens). The job uses this model for text
fields when no `--sentencepiece_model` is given. It is written into the package
(`transforms/text_models/`, package data) so that Dataflow workers have it installed.
"""

from __future__ import annotations

import argparse
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
MODEL = HERE.parent.parent / "transforms" / "text_models" / "gato_text.model"


def babyai_missions(*, seeds: int) -> list[str]:
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the BabyAI environments)

    missions: set[str] = set()
    levels = sorted(name for name in gym.registry if name.startswith("BabyAI-"))
    for level in levels:
        env = gym.make(level)
        for seed in range(seeds):
            env.reset(seed=seed)
            missions.add(env.unwrapped.mission)
        env.close()
    return sorted(missions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=40, help="resets per level")
    parser.add_argument("--vocab_size", type=int, default=1000, help="upper bound on pieces")
    args = parser.parse_args()
    corpus = HERE / "corpus.txt"
    missions = babyai_missions(seeds=args.seeds)
    corpus.write_text("\n".join(missions) + "\n", encoding="utf-8")
    print(f"{len(missions)} distinct missions -> {corpus}")

    from transforms.train_sentencepiece import main as train

    train([str(corpus), "--output", str(MODEL), "--vocab_size", str(args.vocab_size)])


if __name__ == "__main__":
    main()
