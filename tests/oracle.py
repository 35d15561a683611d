"""The naive definition of docs/semantics.md sections 2-4: the reference every engine must equal."""

WRAPPED = ",.;:?!`"


def spaced(text: str) -> str:
    for c in WRAPPED:
        text = text.replace(c, f" {c} ")
    for c in "\t\n\r":
        text = text.replace(c, " ")
    return f" {text} "


def naive_match(texts, padded_entries) -> list[list[int]]:
    """For each text, the ids of padded entries that occur in its spaced form."""
    out = []
    for t in texts:
        if t is None:
            out.append([])
            continue
        s = spaced(t)
        out.append([i for i, e in enumerate(padded_entries) if e in s])
    return out


def padded_entries(md) -> list[str]:
    return [md.padded(i) for i in range(len(md))]
