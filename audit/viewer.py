"""The token viewer `viewer.html`: a few sequences per task as the model sees them.

For each task, up to `ROWS_PER_TASK` rows of its first shard (sorted by path; the first
rows, plus the first prompted row when those have no prompt): every token as a box coloured
by modality, underlined where the loss mask is 1, hatched where it belongs to the prompt,
its id, local position and timestep on hover (a `title`, no script); then the row's
timesteps decoded with `transforms.decode.decode_episode` (images reassembled from their
patches and cropped to the stored shape, text decoded when the text model is given, other
fields as numbers). Nothing assumes images exist (control-suite rows have none), and a
row that cannot be decoded says why instead of failing the job. Rows of a vision-language
dataset (the manifest describes it under `vision_language`) are decoded instead with
`transforms.vl_decode.decode_vl_row`: per unit its source key, then its images (at
`VL_IMAGE_SCALE`: they are already S x S) and text runs in order, each run marked target
(loss mask 1) or context (no loss), E shown as [E].

One static page, no script, no external asset: frames are inline base64 PNGs (Pillow,
no time chunks), drawn at `FRAME_SCALE` with `image-rendering: pixelated` inside a
`FRAME_BORDER` border, so a screenshot shows the stored pixels exactly. The same output
gives the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from formats.files import output_filesystem, write_bytes
from schemas import output as out
from schemas.fields import FieldSpec
from schemas.vocab import Encoding, Modality, VocabLayout
from transforms.decode import decode_episode
from transforms.text import SentencePieceTokenizer
from transforms.vl_decode import IMAGE, decode_vl_row

ROWS_PER_TASK = 3
MAX_TIMESTEPS = 12  # decoded timesteps shown per row
MAX_VALUES = 16  # numbers shown per field and timestep
FRAME_SCALE = 2
VL_IMAGE_SCALE = 1  # vision-language images are S x S (192 by default) already
TEXT_CHARS = 300  # characters of a vision-language text run shown (a document's first ones)
FRAME_BORDER_PX = 2
FRAME_BORDER = "#ff00ff"  # used by nothing else on the page: tests find frames by it
MODALITY_COLORS = {
    Modality.PAD: "#e6e6e6", Modality.TEXT: "#f4a261", Modality.IMAGE: "#2a9d8f",
    Modality.DISCRETE: "#e9c46a", Modality.CONTINUOUS: "#6c9bd2", Modality.SEPARATOR: "#222222",
}


def field_spec(metadata: Mapping[str, Any]) -> FieldSpec:
    """The FieldSpec a manifest's `fields` entry describes (`FieldSpec.to_metadata`)."""
    size = metadata.get("image_size")
    return FieldSpec(
        Modality[str(metadata["modality"]).upper()],
        encoding=None if metadata.get("encoding") is None else Encoding(metadata["encoding"]),
        offset=int(metadata.get("offset") or 0),
        image_size=None if size is None else (int(size[0]), int(size[1])),
        loss=metadata.get("loss"),
    )


def pick_rows(is_prompt_rows: Sequence[Sequence[bool]]) -> list[int]:
    """Row indices to show: the first `ROWS_PER_TASK`, the last of them replaced by the first
    prompted row when none of them has a prompt (so auditors see one)."""
    chosen = list(range(min(ROWS_PER_TASK, len(is_prompt_rows))))
    prompted = next((i for i, row in enumerate(is_prompt_rows) if any(row)), None)
    if prompted is not None and prompted not in chosen and chosen:
        chosen[-1] = prompted
    return chosen


def task_rows(output_dir: str, manifest: Mapping[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """{(dataset, task): the rows to show}, from the first row group of each task's first shard."""
    fs, root = output_filesystem(output_dir)
    first: dict[tuple[str, str], str] = {}
    for shard in sorted(manifest.get(out.M_SHARDS) or [], key=lambda s: s[out.S_PATH]):
        first.setdefault((str(shard[out.S_DATASET]), str(shard[out.S_TASK])), str(shard[out.S_PATH]))
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for task, relative in sorted(first.items()):
        with fs.open(posixpath.join(root, relative), "rb") as f:
            parquet = pq.ParquetFile(f)
            if not parquet.num_row_groups:
                rows[task] = []
                continue
            # The prompt flags first, then only the rows up to the last chosen: a whole row
            # group of image rows is ~70 MB of patches to decompress for 3 rows.
            chosen = pick_rows(parquet.read_row_group(0, columns=[out.IS_PROMPT]).column(out.IS_PROMPT).to_pylist())
            head = next(parquet.iter_batches(batch_size=max(chosen) + 1, row_groups=[0])) if chosen else None
        rows[task] = [head.slice(i, 1).to_pylist()[0] for i in chosen] if head is not None else []
    return rows


def png_base64(frame: np.ndarray) -> str:
    """Deterministic PNG (no time chunk) of a uint8 `[H, W, C]` frame, base64."""
    from PIL import Image  # only where there are frames

    pixels = frame[..., 0] if frame.shape[-1] == 1 else frame
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _token_strip(row: Mapping[str, Any]) -> str:
    """One box per token up to the padding; the padding as one run."""
    tokens, modality = row[out.TOKENS], row[out.MODALITY]
    used = len(tokens)
    while used and modality[used - 1] == Modality.PAD:
        used -= 1
    boxes = []
    for i in range(used):
        m = Modality(modality[i])
        classes = f"t m{int(m)}" + (" loss" if row[out.LOSS_MASK][i] else "") + (" prompt" if row[out.IS_PROMPT][i] else "")
        title = (
            f"#{i} id {tokens[i]} {m.name.lower()}, local position {row[out.LOCAL_POSITIONS][i]}, "
            f"timestep {row[out.TIMESTEP][i]}, loss {int(row[out.LOSS_MASK][i])}"
            + (", prompt" if row[out.IS_PROMPT][i] else "")
        )
        boxes.append(f'<span class="{classes}" title="{html.escape(title)}"></span>')
    if used < len(tokens):
        boxes.append(f'<span class="padrun">+{len(tokens) - used} padding</span>')
    return f'<div class="tokens">{"".join(boxes)}</div>'


def _frame(frame: np.ndarray, shape: Sequence[int], spec: FieldSpec) -> str:
    if spec.image_size is None and len(shape) >= 2 and shape[0] <= frame.shape[0] and shape[1] <= frame.shape[1]:
        frame = frame[: shape[0], : shape[1]]  # the zero padding to multiples of 16 is not data
    return _img(frame, FRAME_SCALE)


def _img(frame: np.ndarray, scale: int) -> str:
    """A frame drawn at `scale` inside the FRAME_BORDER border (class "frame")."""
    h, w = frame.shape[0], frame.shape[1]
    return (
        f'<img class="frame" width="{w * scale}" height="{h * scale}" alt="{w}x{h} frame" '
        f'src="data:image/png;base64,{png_base64(frame)}">'
    )


def _values(value: Any) -> str:
    if isinstance(value, str):
        return html.escape(repr(value))
    flat = np.asarray(value).reshape(-1)
    shown = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in flat[:MAX_VALUES].tolist())
    return html.escape(f"[{shown}{', ...' if flat.shape[0] > MAX_VALUES else ''}]")


def _decoded(row: Mapping[str, Any], specs: Mapping[str, FieldSpec], shapes: Mapping[str, Any],
             layout: VocabLayout, text: SentencePieceTokenizer | None) -> str:
    """The row's timesteps, field by field, or why they cannot be shown."""
    has_text = any(s.modality is Modality.TEXT for s in specs.values())
    if has_text and text is None:
        return '<p class="note">text fields: no text model given, tokens only</p>'
    try:
        decoded = decode_episode(row, specs, shapes={p: tuple(s) for p, s in shapes.items()}, layout=layout, text=text)
    except ValueError as e:
        return f'<p class="note">not decoded: {html.escape(str(e))}</p>'
    cells = []
    for i, t in enumerate(decoded.timesteps[:MAX_TIMESTEPS].tolist()):
        parts = []
        for path, values in decoded.fields.items():  # token order: observations, then actions
            spec = specs[path]
            shown = _frame(values[i], shapes.get(path, ()), spec) if spec.modality is Modality.IMAGE else _values(values[i])
            parts.append(f'<div class="field"><b>{html.escape(path)}</b> {shown}</div>')
        cells.append(f'<div class="step"><div class="when">timestep {t}</div>{"".join(parts)}</div>')
    more = len(decoded.timesteps) - MAX_TIMESTEPS
    tail = f'<p class="note">and {more} more timestep(s)</p>' if more > 0 else ""
    return f'<div class="steps">{"".join(cells)}</div>{tail}'


def _text_run(run: Mapping[str, Any]) -> str:
    """One decoded text run: target (loss) or context, its text (ids without a text model)."""
    shown = repr(run["text"]) if run["text"] is not None else "ids " + " ".join(map(str, run["ids"]))
    cut = shown[:TEXT_CHARS] + ("\u2026" if len(shown) > TEXT_CHARS else "")
    label = "target, loss" if run["loss"] else "context, no loss"
    return f'<div class="field"><b>{label}</b> {html.escape(cut)}{" [E]" if run["end"] else ""}</div>'


def _vl_decoded(row: Mapping[str, Any], *, layout: VocabLayout, text: SentencePieceTokenizer | None,
                image_size: int | None) -> str:
    """The row's units: each one's source key, then its images and text runs in order."""
    try:
        units = decode_vl_row(row, layout=layout, tokenizer=text, image_size=image_size)
    except ValueError as e:
        return f'<p class="note">not decoded: {html.escape(str(e))}</p>'
    cells = []
    for i, unit in enumerate(units):
        images, runs = iter(unit["images"]), iter(unit["texts"])
        parts = [_img(next(images), VL_IMAGE_SCALE) if kind == IMAGE else _text_run(next(runs)) for kind in unit["order"]]
        when = html.escape(f"unit {i}: {unit['source_key']}")
        cells.append(f'<div class="step"><div class="when">{when}</div>{"".join(parts)}</div>')
    note = "" if text is not None else '<p class="note">no text model given: text runs as ids</p>'
    return f'{note}<div class="steps">{"".join(cells)}</div>'


def _vl_row_section(row: Mapping[str, Any], *, layout: VocabLayout, text: SentencePieceTokenizer | None,
                    image_size: int | None) -> str:
    head = (
        f"row {row[out.SEQUENCE_INDEX]} of {row[out.EPISODE_ID]}, {row[out.NUM_TOKENS]} tokens before padding, "
        f"{len(row[out.SOURCE_KEYS])} unit(s)"
    )
    return (
        f'<div class="row"><h3>{html.escape(head)}</h3>{_token_strip(row)}'
        f"{_vl_decoded(row, layout=layout, text=text, image_size=image_size)}</div>"
    )


def _row_section(row: Mapping[str, Any], *, specs: Mapping[str, FieldSpec], shapes: Mapping[str, Any],
                 layout: VocabLayout, text: SentencePieceTokenizer | None) -> str:
    prompt = row.get(out.PROMPT_EPISODE_ID)
    head = (
        f"episode {row[out.EPISODE_ID]}, sequence {row[out.SEQUENCE_INDEX]}, {row[out.NUM_TOKENS]} tokens before padding"
        + (f", prompt from episode {prompt}" if prompt is not None else ", no prompt")
    )
    return (
        f'<div class="row"><h3>{html.escape(head)}</h3>{_token_strip(row)}'
        f"{_decoded(row, specs, shapes, layout, text)}</div>"
    )


_STYLE = f"""
body {{ font-family: sans-serif; margin: 16px; color: #111; }}
.tokens {{ display: flex; flex-wrap: wrap; gap: 1px; max-width: 1150px; margin: 4px 0 8px; }}
.t {{ display: inline-block; width: 8px; height: 12px; box-sizing: border-box; }}
.t.loss {{ border-bottom: 3px solid #000; }}
.t.prompt {{ background-image: repeating-linear-gradient(45deg, #fff 0 2px, transparent 2px 4px); }}
.padrun {{ font-size: 11px; color: #666; margin-left: 4px; }}
.steps {{ display: flex; flex-wrap: wrap; gap: 8px; }}
.step {{ border: 1px solid #ccc; padding: 4px; font-size: 11px; max-width: 360px; }}
.when {{ font-weight: bold; margin-bottom: 2px; }}
.frame {{ image-rendering: pixelated; border: {FRAME_BORDER_PX}px solid {FRAME_BORDER}; display: block; }}
.note {{ color: #a15c00; }} .legend span.t {{ margin: 0 4px 0 12px; vertical-align: middle; }}
""" + "".join(f".m{int(m)} {{ background-color: {c}; }}\n" for m, c in MODALITY_COLORS.items())


def render_viewer(manifest: Mapping[str, Any], rows: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
                  *, text: SentencePieceTokenizer | None = None) -> str:
    """The whole page (module docstring); tasks in (dataset, task) order."""
    layout = VocabLayout(**manifest[out.M_VOCABULARY])
    legend = "".join(f'<span class="t m{int(m)}"></span>{m.name.lower()}' for m in MODALITY_COLORS) + (
        '<span class="t m4 loss"></span>loss mask 1<span class="t m4 prompt"></span>prompt'
    )
    described = manifest.get(out.M_VISION_LANGUAGE) or {}
    sections = []
    for (dataset, task), task_rows_ in sorted(rows.items()):
        if dataset in described:
            size = described[dataset].get(out.VL_IMAGE_SIZE)
            body = "".join(_vl_row_section(r, layout=layout, text=text, image_size=size) for r in task_rows_)
        else:
            specs = {p: field_spec(m) for p, m in (manifest.get(out.M_FIELDS) or {}).get(dataset, {}).items()}
            shapes = (manifest.get(out.M_FIELD_SHAPES) or {}).get(dataset, {}).get(task, {})
            body = "".join(_row_section(r, specs=specs, shapes=shapes, layout=layout, text=text) for r in task_rows_)
        sections.append(f"<section><h2>{html.escape(f'{dataset} / {task}')}</h2>{body}</section>")
    decoded = (
        "the row's units decoded (each image as stored, then its text runs: target where the loss mask is 1, "
        "context where it is 0; [E] is the end-of-sequence token)." if described
        else f"the row's timesteps decoded. Frames are shown at {FRAME_SCALE}x."
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Gato data: token viewer</title><style>{_STYLE}</style></head><body>"
        "<h1>Token viewer</h1><p>A few sequences per task as the model sees them: one box per token "
        f"(hover for id, local position and timestep), then {decoded}</p>"
        f'<p class="legend">{legend}</p>{"".join(sections)}</body></html>\n'
    )


def write_viewer(output_dir: str, manifest: Mapping[str, Any], *, text_model: str | None = None) -> str:
    """Renders `viewer.html` from the shards `manifest` lists; returns its relative path."""
    text = SentencePieceTokenizer.from_path(text_model) if text_model else None
    page = render_viewer(manifest, task_rows(output_dir, manifest), text=text)
    write_bytes(output_dir, out.VIEWER_FILE, page.encode("utf-8"))
    return out.VIEWER_FILE
