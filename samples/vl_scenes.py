"""Rendered scenes for the vision-language samples, and the text derived from them.

A scene is 1-3 shapes (circle, square, triangle) of distinct colours on a plain or
two-tone background, drawn with Pillow at one of a few sizes (most not square, so the
image rule's resize and centre crop both act). Captions and question/answer pairs are
derived from the scene description, never from pixels, so they are true by construction.

Determinism: every choice is `stable_randrange`/`stable_uniform` of (seed, dataset,
index, what is chosen); the same arguments give the same scene, text and (with the same
Pillow and its codecs) the same image bytes.
"""

from __future__ import annotations

import dataclasses
import io

from PIL import Image, ImageDraw

from transforms.hashing import stable_hash, stable_randrange, stable_uniform

KINDS = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38), "green": (46, 160, 67), "blue": (40, 90, 215),
    "yellow": (240, 205, 40), "purple": (135, 60, 175), "grey": (128, 128, 128),
}
# Backgrounds: the shape colours and two neutral ones; shapes never share the background's.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"white": (245, 245, 240), "black": (25, 25, 25), **COLOURS}
SIZES: tuple[tuple[int, int], ...] = ((160, 120), (240, 180), (200, 200), (256, 192), (120, 160))
NUMBER_WORDS = ("zero", "one", "two", "three")
JPEG_QUALITY = 90
WEBP_QUALITY = 90
SUFFIXES = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclasses.dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (inclusive, Pillow's convention)


@dataclasses.dataclass(frozen=True)
class Scene:
    """What was drawn. `shapes` run left to right and have distinct kinds and colours;
    `background` is one colour name, or two (first left/top, second right/bottom)."""

    width: int
    height: int
    background: tuple[str, ...]
    split: str  # "" (plain), "vertical" (left | right) or "horizontal" (top / bottom)
    shapes: tuple[Shape, ...]

    def shape(self, kind: str) -> Shape | None:
        return next((s for s in self.shapes if s.kind == kind), None)


def _ordered(options: tuple[str, ...] | list[str], *parts: object) -> list[str]:
    """`options` in a stable pseudo-random order (a shuffle keyed by the parts)."""
    return sorted(options, key=lambda o: stable_hash(*parts, o))  # type: ignore[arg-type]


def make_scene(seed: int, dataset: str, index: int) -> Scene:
    """The scene of record `index` of `dataset`: a pure function of the three."""
    at = (seed, dataset, index)
    width, height = SIZES[stable_randrange(len(SIZES), *at, "size")]
    count = 1 + stable_randrange(3, *at, "count")
    two_tone = stable_uniform(*at, "two_tone") < 0.3
    background = tuple(_ordered(list(BACKGROUNDS), *at, "background")[: 2 if two_tone else 1])
    split = ("vertical", "horizontal")[stable_randrange(2, *at, "split")] if two_tone else ""
    kinds = _ordered(KINDS, *at, "kind")[:count]
    colours = _ordered([c for c in COLOURS if c not in background], *at, "colour")[:count]
    slot = width / count  # one slot per shape, left to right: shapes never overlap
    shapes = []
    for i, (kind, colour) in enumerate(zip(kinds, colours)):
        size = int(min(slot, height) * (0.45 + 0.3 * stable_uniform(*at, "size", i)))
        room_x, room_y = (slot - size) / 2, (height - size) / 2
        x0 = int(slot * i + room_x + room_x * 0.8 * (2 * stable_uniform(*at, "x", i) - 1))
        y0 = int(room_y + room_y * 0.8 * (2 * stable_uniform(*at, "y", i) - 1))
        shapes.append(Shape(kind, colour, (x0, y0, x0 + size - 1, y0 + size - 1)))
    return Scene(width, height, background, split, tuple(shapes))


def render(scene: Scene) -> Image.Image:
    """The scene as an RGB image."""
    image = Image.new("RGB", (scene.width, scene.height), BACKGROUNDS[scene.background[0]])
    draw = ImageDraw.Draw(image)
    if scene.split == "vertical":
        draw.rectangle((scene.width // 2, 0, scene.width - 1, scene.height - 1), fill=BACKGROUNDS[scene.background[1]])
    elif scene.split == "horizontal":
        draw.rectangle((0, scene.height // 2, scene.width - 1, scene.height - 1), fill=BACKGROUNDS[scene.background[1]])
    for shape in scene.shapes:
        fill = COLOURS[shape.colour]
        x0, y0, x1, y1 = shape.box
        if shape.kind == "circle":
            draw.ellipse(shape.box, fill=fill)
        elif shape.kind == "square":
            draw.rectangle(shape.box, fill=fill)
        else:
            draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=fill)
    return image


def encode(image: Image.Image, image_format: str) -> bytes:
    """JPEG (quality 90, Pillow's defaults otherwise), PNG or WebP (quality 90) bytes;
    none of them carries a timestamp."""
    out = io.BytesIO()
    if image_format == "JPEG":
        image.save(out, "JPEG", quality=JPEG_QUALITY)
    elif image_format == "WEBP":
        image.save(out, "WEBP", quality=WEBP_QUALITY)
    elif image_format == "PNG":
        image.save(out, "PNG")
    else:
        raise ValueError(f"image format {image_format!r}; known: {sorted(SUFFIXES)}")
    return out.getvalue()


# ---------------------------------------------------------------- captions


def _named(shape: Shape) -> str:
    return f"a {shape.colour} {shape.kind}"


def _listed(names: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def background_name(scene: Scene) -> str:
    """"green", or "green and white" for a two-tone background."""
    return " and ".join(scene.background)


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def captions(scene: Scene) -> list[str]:
    """Five different true descriptions of the scene (COCO has five per image)."""
    names = [_named(s) for s in scene.shapes]
    background = f"a {background_name(scene)} background"
    count = len(names)
    if count == 1:
        placed = f"{names[0]} on its own on {background}"
    elif count == 2:
        placed = f"{names[0]} to the left of {names[1]}"
    else:
        placed = f"{_listed(names)} from left to right"
    noun = "shape" if count == 1 else "shapes"
    return [
        _sentence(f"{_listed(names)} on {background}"),
        _sentence(f"{NUMBER_WORDS[count]} {noun} on {background}: {_listed(names)}"),
        _sentence(f"{background} with {_listed(names)}"),
        _sentence(placed),
        _sentence(f"a picture of {_listed(names[::-1])}"),
    ]


def alt_text(scene: Scene, *, seed: int, dataset: str, index: int) -> str:
    """One caption, alt-text style (lower case, no full stop), as Conceptual Captions has."""
    chosen = captions(scene)[stable_randrange(5, seed, dataset, index, "caption")]
    return chosen[0].lower() + chosen[1:-1]


# ---------------------------------------------------------------- questions


@dataclasses.dataclass(frozen=True)
class Question:
    """A question about a scene with its true answer; `question_type`/`answer_type` as
    VQAv2 labels them."""

    question: str
    answer: str
    question_type: str
    answer_type: str


def vqa_question(scene: Scene, *, seed: int, dataset: str, index: int, number: int) -> Question:
    """Question `number` (0 or 1) about the scene; the two of one scene differ in type."""
    at = (seed, dataset, index)
    first = stable_randrange(5, *at, "question")
    kind_of = (first + 1 + stable_randrange(4, *at, "question", 1)) % 5 if number else first
    shape = scene.shapes[stable_randrange(len(scene.shapes), *at, "shape", number)]
    if kind_of == 0:
        return Question(f"what colour is the {shape.kind}?", shape.colour, "what color is the", "other")
    if kind_of == 1:
        return Question("how many shapes are there?", NUMBER_WORDS[len(scene.shapes)], "how many", "number")
    if kind_of == 2:
        asked = KINDS[stable_randrange(len(KINDS), *at, "asked", number)]
        answer = "yes" if scene.shape(asked) else "no"
        return Question(f"is there a {asked}?", answer, "is there a", "yes/no")
    if kind_of == 3:
        return Question(f"what shape is the {shape.colour} one?", shape.kind, "what shape is the", "other")
    return Question("what colour is the background?", background_name(scene), "what color is the", "other")


# Plausible wrong answers that annotators give (VQAv2 keeps all ten answers).
NEAR_MISSES = {
    "red": "orange", "green": "teal", "blue": "navy", "yellow": "gold", "purple": "violet",
    "grey": "silver", "white": "cream", "black": "dark", "yes": "no", "no": "yes",
    "circle": "round", "square": "rectangle", "triangle": "pyramid", "one": "1", "two": "2",
    "three": "3",
}


def near_miss(answer: str) -> str:
    """A plausible wrong answer ("green and white" -> "green")."""
    return NEAR_MISSES.get(answer, answer.split(" and ")[0])


# OK-VQA needs outside knowledge: what else has the shape's colour, how many corners it has.
SAME_COLOUR = {
    "red": ("strawberry", "fire truck"), "green": ("grass", "leaf"), "blue": ("sky", "ocean"),
    "yellow": ("banana", "sun"), "purple": ("grape", "eggplant"), "grey": ("elephant", "rock"),
}
CORNERS = {"circle": ("0", "none"), "square": ("4", "four"), "triangle": ("3", "three")}


def okvqa_question(scene: Scene, *, seed: int, dataset: str, index: int, number: int) -> tuple[str, str, str]:
    """(question, answer, the other accepted answer): number 0 asks about a colour, 1 about
    corners, each of a shape picked by hash."""
    shape = scene.shapes[stable_randrange(len(scene.shapes), seed, dataset, index, "shape", number)]
    if number == 0:
        first, other = SAME_COLOUR[shape.colour]
        return f"name something that has the same colour as the {shape.kind}", first, other
    first, other = CORNERS[shape.kind]
    return f"how many corners does the {shape.kind} have?", first, other


def vqav2_answers(answer: str, *, seed: int, at: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Ten annotators' answers: the true one, 0-3 near misses at hashed positions."""
    misses = stable_randrange(4, seed, *at, "misses")
    wrong = sorted(range(10), key=lambda i: stable_randrange(2**32, seed, *at, "slot", i))[:misses]
    answers = []
    for i in range(10):
        if i in wrong:
            text, confidence = near_miss(answer), ("maybe", "no")[stable_randrange(2, seed, *at, "conf", i)]
        else:
            text, confidence = answer, "maybe" if stable_uniform(seed, *at, "conf", i) < 0.2 else "yes"
        answers.append({"answer": text, "answer_confidence": confidence, "answer_id": i + 1})
    return answers


def okvqa_answers(answer: str, other: str, *, tie: str | None, seed: int, at: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Five annotators' answers, each listed twice (as OK-VQA lists them). `tie`: the
    annotators split 2-2 between `answer` (listed first) and `other`, the fifth says `tie`."""
    if tie is not None:
        given = [answer, other, answer, other, tie]
    else:
        others = stable_randrange(3, seed, *at, "others")  # 0-2 of annotators 2-5 say `other`
        given = [answer] + [other if i < others else answer for i in range(4)]
    answers = []
    for i, text in enumerate(a for a in given for _ in range(2)):
        raw = text.capitalize() if stable_uniform(seed, *at, "raw", i) < 0.3 else text
        answers.append({"answer": text, "raw_answer": raw, "answer_confidence": "yes", "answer_id": i + 1})
    return answers
