"""The canonical emotion vocabulary (AffectNet's eight) and mapping of names onto it.

Every model and every rating file is mapped onto these names *by name*, never by index:
label orders differ between model families (see shared/MODELS.md).
"""

from __future__ import annotations

import unicodedata

CANONICAL: tuple[str, ...] = (
    "neutral",
    "happiness",
    "sadness",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
)

# Lower-case synonym -> canonical name. Covers model vocabularies (EmotiEffLib "Happiness",
# EmoNet/ESR "Happy"), common rating-form spellings, and Korean labels used in our studies.
SYNONYMS: dict[str, str] = {
    **{name: name for name in CANONICAL},
    "happy": "happiness", "joy": "happiness", "happiness/joy": "happiness", "smile": "happiness",
    "sad": "sadness", "sorrow": "sadness",
    "surprised": "surprise", "astonishment": "surprise",
    "afraid": "fear", "fearful": "fear", "scared": "fear",
    "disgusted": "disgust",
    "angry": "anger", "rage": "anger",
    "contemptuous": "contempt",
    "calm": "neutral", "none": "neutral", "neutrality": "neutral",
    "중립": "neutral", "무표정": "neutral",
    "행복": "happiness", "기쁨": "happiness",
    "슬픔": "sadness",
    "놀람": "surprise",
    "공포": "fear", "두려움": "fear",
    "혐오": "disgust",
    "분노": "anger", "화남": "anger",
    "경멸": "contempt",
}


def normalise_token(text: str) -> str:
    """Case-fold and Unicode-normalise a label so 'Happy ', 'HAPPY' and 'happy' compare equal."""
    return unicodedata.normalize("NFKC", str(text)).strip().casefold()


def to_canonical(label: object, code_map: dict[str, str] | None = None) -> str | None:
    """Map a raw label (name, synonym or declared code such as ``1``) to a canonical name.

    Returns None when the label is unknown; callers report that as an error, never guess.
    ``code_map`` maps raw tokens (e.g. ``"1"``) to any known name or synonym.
    """
    token = normalise_token(label)
    if code_map:
        mapped = {normalise_token(k): v for k, v in code_map.items()}
        if token in mapped:
            token = normalise_token(mapped[token])
        elif token.endswith(".0") and token[:-2] in mapped:  # Excel turns code 1 into 1.0
            token = normalise_token(mapped[token[:-2]])
    return SYNONYMS.get(token)


def map_label_order(native: list[str] | tuple[str, ...]) -> list[str]:
    """Canonical names for a model's native label order; raises on any unknown label."""
    mapped = [to_canonical(name) for name in native]
    unknown = [name for name, canon in zip(native, mapped) if canon is None]
    if unknown:
        raise ValueError(f"labels not in the canonical vocabulary: {unknown}")
    if len(set(mapped)) != len(mapped):
        raise ValueError(f"two native labels map to the same canonical name: {native}")
    return mapped  # type: ignore[return-value]
