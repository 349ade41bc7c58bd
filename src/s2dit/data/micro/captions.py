"""Micro-world captions: varied wording that can be parsed back into attributes.

:func:`write_caption` describes a scene with one of several sentence templates and synonyms for shapes,
sizes, motions and backgrounds. :func:`parse_caption` recovers the attributes a caption asks for (each
object's color, shape, size and motion, and the background), which is what the micro-world metrics score a
generated clip against. Every object is described as ``<size> <color> <shape> <motion>``; colors start
object clauses, so a caption names at most one object per color.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from s2dit.data.micro.scene import Scene
from s2dit.data.micro.vocab import (
    BACKGROUND_PHRASES,
    BACKGROUNDS,
    COLORS,
    GRADIENT_WORD,
    MOTION_PHRASES,
    SHAPE_WORDS,
    SIZE_WORDS,
)

_COUNT_WORDS = ("one", "two", "three")
_SCENE_TEMPLATES = (
    "{objects} {bg}.",
    "{Bg}, {objects}.",
    "{Count} {noun} {bg}: {objects}.",
    "A video where {objects}, {bg}.",
)
_DIAGONAL_WORDS = {
    "up": {"v": "up", "vc": "top", "vp": "upper"},
    "down": {"v": "down", "vc": "bottom", "vp": "lower"},
}


def _pick(rng: np.random.Generator, options) -> str:
    return str(options[int(rng.integers(len(options)))])


def _motion_phrases(motion: str) -> list[str]:
    """Every phrase that describes ``motion`` (diagonal templates filled in)."""
    if motion.startswith("diagonal_"):
        vert, horiz = motion.removeprefix("diagonal_").split("_")
        return [t.format(h=horiz, **_DIAGONAL_WORDS[vert]) for t in MOTION_PHRASES["diagonal"]]
    return list(MOTION_PHRASES[motion])


def _background_phrase(rng: np.random.Generator, name: str) -> str:
    kind = BACKGROUNDS[name][0]
    words = f"plain {name}" if kind == "plain" else f"{name} {GRADIENT_WORD[kind]}"
    if kind == "plain" and rng.random() < 0.5:
        words = name
    return _pick(rng, BACKGROUND_PHRASES).format(bg=words)


def write_caption(rng: np.random.Generator, scene: Scene) -> str:
    """A caption for ``scene`` naming every object's size, color, shape and motion, and the background."""
    clauses = [
        f"a {_pick(rng, SIZE_WORDS[o.size])} {o.color} {_pick(rng, SHAPE_WORDS[o.shape])} "
        f"{_pick(rng, _motion_phrases(o.motion))}"
        for o in scene.objects
    ]
    if len(clauses) == 1:
        objects = clauses[0]
    elif rng.random() < 0.5:
        objects = ", ".join(clauses[:-1]) + " and " + clauses[-1]
    else:
        objects = ", while ".join(clauses) if len(clauses) == 2 else "; ".join(clauses)
    bg = _background_phrase(rng, scene.background)
    n = len(scene.objects)
    text = _pick(rng, _SCENE_TEMPLATES).format(
        objects=objects,
        bg=bg,
        Bg=bg[0].upper() + bg[1:],
        Count=_COUNT_WORDS[n - 1].capitalize(),
        noun="shape" if n == 1 else "shapes",
    )
    return text[0].upper() + text[1:]


# ---------------------------------------------------------------------------------------------------
# Parsing: the captions above, and prompts as people write them
# ---------------------------------------------------------------------------------------------------


def _forms(*stems: str) -> set[str]:
    """Each ``stem`` and its ``-s`` / ``-es`` forms (``"box"`` -> box, boxes)."""
    return {f for w in stems for f in (w, w + "es" if w.endswith(("s", "x", "sh", "ch")) else w + "s")}


# Words beyond vocab.py's that people use for the world's attributes.
_MORE_SHAPE_WORDS = {"circle": ("disk", "dot", "orb", "sphere"), "square": ("cube",), "diamond": ("lozenge",)}
_MORE_SIZE_WORDS = {"small": ("mini", "smallish"), "large": ("giant", "massive", "enormous")}
_SHAPE_OF = {
    form: shape
    for shape, words in SHAPE_WORDS.items()
    for w in (*words, *_MORE_SHAPE_WORDS.get(shape, ()))
    for form in _forms(w)
} | {"rhombi": "diamond"}
_PLURAL_SHAPES = {w for w in _SHAPE_OF if w.endswith("s") and w not in ("rhombus",)} | {"rhombi"}
_GENERIC = _forms("shape", "object", "thing", "item", "figure")  # a noun that names no shape
_SIZE_OF = {w: size for size, words in SIZE_WORDS.items() for w in (*words, *_MORE_SIZE_WORDS[size])}
_NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_COUNT_OF = {w: i + 1 for i, w in enumerate(_NUMBERS)} | {
    "a": 1,
    "an": 1,
    "single": 1,
    "pair": 2,
    "couple": 2,
    "both": 2,
}
_DETERMINERS = {"the", "another", "other", "this", "these", "those", "its", "their"}
_DISTRIBUTORS = {"all", "each", "every", "both"}
_BACKGROUND_OF = {name: name for name in BACKGROUNDS} | {
    "grey": "gray",
    "twilight": "dusk",
    "dusky": "dusk",
    "fog": "fog",
    "foggy": "fog",
    "mist": "fog",
    "misty": "fog",
    "sandy": "sand",
}
_BACKGROUND_BEFORE_NOUN = {"dark": "black", "light": "white"}  # only as in "a dark background"
_BACKGROUND_NOUNS = _forms("background", "backdrop")
_BACKGROUND_FILLERS = {"plain", "solid", "gradient", "uniform", "flat", "colored", "coloured"}

# Motion words. Direction words are (dx, dy) in image axes (y grows downward).
_DIRECTIONS = {
    **dict.fromkeys(("left", "leftward", "leftwards"), (-1, 0)),
    **dict.fromkeys(("right", "rightward", "rightwards"), (1, 0)),
    **dict.fromkeys(("up", "upward", "upwards", "top", "upper"), (0, -1)),
    **dict.fromkeys(("down", "downward", "downwards", "bottom", "lower"), (0, 1)),
}
_UP_VERBS = _forms("rise", "climb", "ascend") | {"rising", "rose", "climbing", "ascending"}
_DOWN_VERBS = _forms("fall", "sink", "drop", "descend") | {"falling", "sinking", "dropping", "descending"}
_MOVE_VERBS = (
    _forms(
        "move", "slide", "drift", "travel", "glide", "go", "head", "roll", "float", "shift", "cross", "pass"
    )
    | _forms("run", "fly", "sweep", "make", "get", "become", "keep")
    | {"moving", "moved", "sliding", "drifting", "travelling", "traveling", "gliding", "going", "heading"}
    | {"rolling", "floating", "shifting", "crossing", "passing", "running", "flies", "flying", "sweeping"}
    | {"getting", "becoming", "keeping", "making", "goes"}
)
_GROW_WORDS = _forms("grow", "expand", "swell", "enlarge", "inflate") | {"growing", "grown", "expanding"}
_GROW_WORDS |= {"swelling", "enlarging", "inflating", "bigger", "larger"}
_SHRINK_WORDS = _forms("shrink", "contract", "dwindle", "deflate") | {"shrinking", "contracting", "smaller"}
_SHRINK_WORDS |= {"dwindling", "deflating"}
_BOUNCE_WORDS = _forms("bounce", "oscillate") | {"bouncing", "bounced", "oscillating"}
_STILL_WORDS = {"still", "stationary", "static", "motionless", "unmoving", "immobile", "put"}
_STILL_VERBS = _forms("stay", "sit", "rest", "remain", "stand", "wait", "hover")
_STILL_VERBS |= {"staying", "sitting", "resting", "remaining", "standing", "waiting", "hovering"}
_START_VERBS = _forms("start", "begin") | {"starting", "beginning"}
_END_VERBS = _forms("end", "finish", "stop") | {"ending", "finishing", "stopping"}
_NEGATIONS = {"not", "never", "without", "no", "doesn't", "don't", "isn't", "won't", "cannot"}
_OSCILLATIONS = re.compile(
    r"\b(left and right|right and left|up and down|down and up|back and forth|forth and back|to and fro"
    r"|side to side|top and bottom|bottom and top)\b"
)
_MOTION_OTHER = {"diagonal", "diagonally", "sideways", "horizontally", "vertically", "horizontal", "vertical"}
_MOTION_OTHER |= _forms("corner", "side", "edge", "wall", "screen", "frame", "way", "place", "time")
_MOTION_OTHER |= {"back", "forth", "fro", "between", "across", "along", "away", "around", "toward", "towards"}
_MOTION_OTHER |= {"to", "into", "onto", "from", "then", "over", "off", "again"}
_PLACE_PREPOSITIONS = {"in", "into", "at", "on", "to", "toward", "towards", "around", "near", "along", "onto"}
_PLACE_PREPOSITIONS |= {"past", "behind", "beside", "through", "across", "like", "inside", "under", "from"}
_FUNCTION_WORDS = {"a", "an", "the", "and", "or", "of", "on", "in", "at", "with", "while", "where", "which"}
_FUNCTION_WORDS |= {"that", "is", "are", "it", "its", "they", "their", "them", "as", "by", "there", "here"}
_FUNCTION_WORDS |= {"video", "clip", "shown", "showing", "shows", "show", "see", "we", "this", "these"}
_FUNCTION_WORDS |= {"those", "also", "together", "front", "does", "do", "doing", "while", "whilst", "then"}
_FUNCTION_WORDS |= {"of", "one", "ones", "other", "another", "be", "being", "been", "has", "have", "very"}
_FUNCTION_WORDS |= {"against", "over", "front", "where", "when", "who", "what", "has", "having"}
_LEXICON = (
    set(COLORS)
    | set(_SHAPE_OF)
    | _GENERIC
    | set(_SIZE_OF)
    | set(_COUNT_OF)
    | _DETERMINERS
    | _DISTRIBUTORS
    | set(_BACKGROUND_OF)
    | set(_BACKGROUND_BEFORE_NOUN)
    | _BACKGROUND_NOUNS
    | _BACKGROUND_FILLERS
    | set(_DIRECTIONS)
    | _UP_VERBS
    | _DOWN_VERBS
    | _MOVE_VERBS
    | _GROW_WORDS
    | _SHRINK_WORDS
    | _BOUNCE_WORDS
    | _STILL_WORDS
    | _STILL_VERBS
    | _START_VERBS
    | _END_VERBS
    | _NEGATIONS
    | _MOTION_OTHER
    | _PLACE_PREPOSITIONS
    | _FUNCTION_WORDS
)
_PUNCTUATION = set(",;:.!?")
_CONNECTORS = {"and", "or", ",", "as", "well", "with"}


def _known(token: str) -> bool:
    return token in _LEXICON or token in _PUNCTUATION or token.isdigit()


def _motion_from_words(words: list[str]) -> str | None:
    """The motion a clause describes (one of vocab.MOTIONS, the families "diagonal" / "bounce" when no
    direction is named, or None).

    Direction phrases add up as vectors: "to/toward X" and bare directions count +X, "from X" counts -X,
    and a place ("in the top left corner", "along the bottom") counts nothing, so "slides from left to
    right" is right and "heads towards the upper left" is diagonal_up_left; a way there and back ("up
    and down", "left to right and back") is a bounce.
    """
    words = [w for w in words if w not in _PUNCTUATION]
    text = " ".join(words)
    has = set(words).__contains__
    negated = any(w in _NEGATIONS and words[k + 1 : k + 3] for k, w in enumerate(words)) and any(
        w in _MOVE_VERBS for w in words
    )
    if any(map(has, _STILL_WORDS)) or negated or " in place" in f" {text}":
        return "still"
    there_and_back = (has("then") or has("back")) and (
        (has("up") and has("down")) or (has("left") and has("right"))
    )  # "moves up then down", "goes from left to right and back"
    if any(map(has, _BOUNCE_WORDS)) or _OSCILLATIONS.search(text) or there_and_back:
        vertical = has("vertically") or has("vertical") or (has("up") and has("down"))
        vertical = vertical or (has("top") and has("bottom"))
        horizontal = has("horizontally") or has("horizontal") or has("sideways") or has("sides")
        horizontal = horizontal or (has("left") and has("right")) or "side to side" in text
        if vertical != horizontal:
            return "bounce_vertical" if vertical else "bounce_horizontal"
        return "bounce"
    grow, shrink = any(map(has, _GROW_WORDS)), any(map(has, _SHRINK_WORDS))
    if grow != shrink:
        return "grow" if grow else "shrink"
    source, target = np.zeros(2), np.zeros(2)
    mode = "to"
    for k, w in enumerate(words):
        before = words[k - 1] if k else ""
        if w == "from":
            mode = "from"
        elif w in ("to", "toward", "towards", "into", "onto", "and") or w in _MOVE_VERBS:
            mode = "to"
        elif w in ("in", "at", "on", "near", "by", "along", "across"):
            mode = "from" if before in _START_VERBS else "to" if before in _END_VERBS else "place"
        if w in _UP_VERBS or w in _DOWN_VERBS:
            mode = "to"
            target[1] += -1 if w in _UP_VERBS else 1
        if w in _DIRECTIONS and mode != "place":
            (source if mode == "from" else target)[:] += _DIRECTIONS[w]
    dx, dy = np.sign(target - source)
    diagonal = has("diagonal") or has("diagonally")
    if dx and dy:
        return f"diagonal_{'up' if dy < 0 else 'down'}_{'left' if dx < 0 else 'right'}"
    if diagonal:
        return "diagonal"  # no (or only one) direction named: any diagonal counts
    if dx or dy:
        return ("left" if dx < 0 else "right") if dx else ("up" if dy < 0 else "down")
    if any(map(has, _STILL_VERBS)):
        return "still"
    return None


@dataclasses.dataclass
class _Group:
    """Objects one noun phrase names ("two red squares"), with the words that follow it."""

    count: int | None = None
    colors: list[str] = dataclasses.field(default_factory=list)
    shape: str | None = None
    size: str | None = None
    plural: bool = False
    generic: bool = False  # the noun names no shape ("shapes", "objects", "one")
    inherit: str | None = (
        None  # "next" / "previous": the shape comes from a neighbour ("a red and a blue ball")
    )
    tail: list[str] = dataclasses.field(default_factory=list)
    members: list[_Group] = dataclasses.field(default_factory=list)  # "two balls, one red and one blue"

    @property
    def n(self) -> int:
        default = len(self.colors) if len(self.colors) > 1 else 2 if self.plural else 1
        return max(self.count or default, len(self.members))

    def motion(self) -> str | None:
        return _motion_from_words(self.tail)


def _phrase(tokens: list[str], i: int, bg: list[bool]) -> dict:
    """Read the noun phrase that may start at ``tokens[i]``: its count, colors, size, unknown words and
    head noun (``head``: its index, None when the run of determiners and adjectives ends without a noun)."""
    out = {"count": None, "both": False, "det": False, "dist": False, "colors": [], "size": None}
    out |= {"unknown": [], "bg_colors": [], "head": None, "end": i}
    j = i
    while j < len(tokens) and not bg[j]:
        t = tokens[j]
        adjectives = out["colors"] or out["size"] or out["unknown"] or out["bg_colors"]
        if t in _SHAPE_OF or t in _GENERIC or (t in ("one", "ones") and adjectives):
            out["head"], out["end"] = j, j + 1
            out["count"] = out["count"] or (2 if out["both"] else None)
            return out
        if t == "both":
            out["both"] = out["dist"] = True
        elif t in _DISTRIBUTORS:
            out["dist"] = True
        elif t in _COUNT_OF or t.isdigit():
            out["count"], out["det"] = int(t) if t.isdigit() else _COUNT_OF[t], True
        elif t in _DETERMINERS:
            out["det"] = out["det"] or t == "another"
        elif t == "of" and j > i and tokens[j - 1] in ("pair", "couple", "all", "both", "each"):
            pass
        elif t in COLORS:
            out["colors"].append(t)
        elif t in _SIZE_OF:
            out["size"] = _SIZE_OF[t]
        elif t in _BACKGROUND_OF:
            out["bg_colors"].append(j)
        elif t in ("and", ",", "or") and adjectives and j + 1 < len(tokens) and tokens[j + 1] in COLORS:
            pass  # a list of colors: "red and blue circles"
        elif not _known(t) or t in _BACKGROUND_BEFORE_NOUN:  # "a shiny red ball", "a dark blue box"
            out["unknown"].append(j)
        else:
            break
        j += 1
    out["end"] = j
    return out


def parse_caption(text: str) -> dict:
    """Attributes a caption (or a prompt as people write it) asks for.

    Returns ``{"background": name or None, "objects": [{"color", "shape", "size", "motion"}, ...],
    "unknown": [words, ...]}``; an attribute the caption does not name is None. Objects are the noun
    phrases ("a small red ball", "two red squares", "red and blue circles", "a red one"), each followed by
    its motion ("slides from left to right", "heads towards the upper left", "moves leftwards"); "both" /
    "all" / "each" distribute over a plural ("two circles, both red, moving left"), and "one ... and one
    ..." splits it. ``unknown`` lists, in order, what the micro world cannot place: words outside its
    vocabulary (a colour or shape it does not have: "a brown hexagon" is an object of no known colour or
    shape), a colour named as the background ("red background"), a background name used as an object
    colour ("white") and objects named as places ("toward the blue box").
    """
    tokens = re.findall(r"[a-z]+(?:'[a-z]+)?|\d+|[,;:.!?]", text.lower())
    n = len(tokens)
    unknown: dict[int, str] = {}  # first token position -> what cannot be placed
    covered: set[int] = set()  # tokens already inside an unknown phrase
    background = None

    def report(start: int, end: int) -> None:
        unknown.setdefault(start, " ".join(tokens[start:end]))
        covered.update(range(start, end))

    # 1. Background phrases: "<name> [plain|gradient] background|backdrop", "<name> gradient",
    #    "background of <name>".
    bg = [False] * n
    for i, t in enumerate(tokens):
        gradient = t == "gradient" and tokens[i + 1 : i + 2] not in [[w] for w in _BACKGROUND_NOUNS]
        if t not in _BACKGROUND_NOUNS and not gradient:
            continue
        j = i - 1
        while j >= 0 and tokens[j] in _BACKGROUND_FILLERS:
            j -= 1
        word = tokens[j] if j >= 0 else ""
        name = _BACKGROUND_OF.get(word) or _BACKGROUND_BEFORE_NOUN.get(word)
        if name is None and tokens[i + 1 : i + 2] == ["of"] and tokens[i + 2 : i + 3]:
            name = _BACKGROUND_OF.get(tokens[i + 2])
            if name:
                bg[i + 1] = bg[i + 2] = True
        elif name is None and word and (word in COLORS or not _known(word)):
            report(j, i + 1)  # a background the world does not have: "red background"
            name = ""
        background = background or name or None
        for k in range(j if name is not None and j >= 0 else j + 1, i + 1):
            bg[k] = True

    # 2. Noun phrases, and the words that follow each one.
    groups: list[_Group] = []
    target: _Group | None = None  # where the words that follow go: a group, or one of its members
    i = 0
    while i < n:
        if bg[i]:
            i += 1
            continue
        ph = _phrase(tokens, i, bg)
        before = tokens[i - 1] if i else ""
        current = groups[-1] if groups else None
        free = current is not None and current.plural and len(current.members) < (current.count or 2)
        adjectives = bool(ph["colors"] or ph["size"])
        ends_unknown = ph["head"] is None and ph["unknown"] and ph["unknown"][-1] == ph["end"] - 1
        if ends_unknown and (ph["det"] or (adjectives and not ph["dist"])):
            ph["head"] = ph["unknown"].pop()  # "a brown hexagon": an object the world cannot draw
        if ph["head"] is not None and before in _PLACE_PREPOSITIONS:
            report(i - 1, ph["end"])  # an object as a place: "moves toward the blue box"
            if target is not None:
                target.tail += tokens[i : ph["end"]]
            i = ph["end"]
            continue
        member = tokens[i] in ("one", "another") or tokens[i : i + 2] == ["the", "other"]
        if ph["head"] is None and not adjectives and not ph["bg_colors"]:
            if free and member:  # "two squares, one moving left and the other moving right"
                target = _Group(count=1)
                current.members.append(target)
                i = ph["end"]
            else:
                if target is not None:
                    target.tail.append(tokens[i])
                i += 1
            continue
        for k in ph["unknown"]:
            report(k, k + 1)
        if ph["head"] is None and not adjectives:  # "on white", "in the fog"
            background = background or _BACKGROUND_OF[tokens[ph["bg_colors"][0]]]
            i = ph["end"]
            continue
        for k in ph["bg_colors"]:  # "a white ball": a background name is no object colour of the world
            report(k, k + 1 if ph["head"] is None else ph["head"] + 1)
        head = tokens[ph["head"]] if ph["head"] is not None else None
        if (head in ("one", "ones") or (head is None and (ph["det"] or member))) and free:
            target = _Group(count=1, colors=ph["colors"], size=ph["size"])  # "one red and one blue"
            current.members.append(target)
        elif head is not None:
            known = head in _SHAPE_OF or head in _GENERIC or head in ("one", "ones")
            target = _Group(
                count=ph["count"],
                colors=ph["colors"],
                shape=_SHAPE_OF.get(head),
                size=ph["size"],
                plural=head in _PLURAL_SHAPES
                or head == "ones"
                or (head.endswith("s") and head not in _SHAPE_OF),
                generic=head in _GENERIC or head in ("one", "ones"),
                inherit="previous" if head in ("one", "ones") else None,
            )
            target.generic = target.generic and known
            groups.append(target)
        else:
            moving = target is not None and any(
                w in _MOVE_VERBS or _motion_from_words([w]) for w in target.tail
            )
            if target is not None and not ph["det"] and (ph["dist"] or not moving):
                # "two circles, both red, moving left": attributes of the objects just named.
                target.colors = target.colors or ph["colors"]
                target.size = target.size or ph["size"]
            else:  # colors without a noun: "a red and a blue ball", "..., blue moves right"
                follows = tokens[ph["end"] : ph["end"] + 1] in (["and"], [","], ["or"])
                target = _Group(count=ph["count"], colors=ph["colors"], size=ph["size"])
                target.inherit = "next" if follows else "previous" if current else None
                groups.append(target)
        i = ph["end"]

    # 3. Objects: share what an elided noun leaves out, drop a scene summary ("Three shapes ...: ..."),
    #    and expand each group into its objects.
    for k, g in enumerate(groups):
        if g.inherit == "next":
            donor = next((h for h in groups[k + 1 :] if h.inherit != "next"), None)
            if donor is not None:
                g.shape = g.shape or donor.shape
                g.tail = g.tail if g.motion() else g.tail + donor.tail
        elif g.inherit == "previous" and k > 0:
            g.shape = g.shape or groups[k - 1].shape
    for k in range(len(groups) - 2, -1, -1):  # "a red ball and a blue box falling": both fall
        g = groups[k]
        if not g.members and g.motion() is None and all(w in _CONNECTORS for w in g.tail):
            g.tail = g.tail + groups[k + 1].tail
    for k, g in enumerate(groups):  # "a red square and a blue one, both falling"
        if g.motion() is not None and any(w in _DISTRIBUTORS for w in g.tail):
            for h in groups[:k]:
                h.tail = h.tail if h.motion() or h.members else h.tail + g.tail
    if len(groups) > 1:
        groups = [
            g
            for g in groups
            if not (g.generic and not g.colors and not g.size and not g.members and not g.motion())
        ]
    objects = []
    for g in groups:
        motion = g.motion()
        for m in range(g.n):
            color = g.colors[0] if len(g.colors) == 1 else g.colors[m] if m < len(g.colors) else None
            obj = {"color": color, "shape": g.shape, "size": g.size, "motion": motion}
            if m < len(g.members):
                member = g.members[m]
                obj["color"] = member.colors[0] if member.colors else obj["color"]
                obj["size"] = member.size or obj["size"]
                obj["motion"] = member.motion() or motion
            objects.append(obj)
    for k, t in enumerate(tokens):
        if not _known(t) and k not in covered:
            report(k, k + 1)
    words = [unknown[k] for k in sorted(unknown)]
    return {"background": background, "objects": objects, "unknown": list(dict.fromkeys(words))}


def unknown_words_warning(text: str) -> str | None:
    """One line saying what of a prompt the micro world cannot draw (None when it knows it all): the words
    it does not know, more objects than it draws, or no object at all."""
    from s2dit.data.micro.writer import MAX_OBJECTS  # writer imports this module

    parsed = parse_caption(text)
    problems = []
    if parsed["unknown"]:
        problems.append("does not know " + ", ".join(f"'{w}'" for w in parsed["unknown"]))
    if len(parsed["objects"]) > MAX_OBJECTS:
        problems.append(f"draws at most {MAX_OBJECTS} objects, not {len(parsed['objects'])}")
    if not parsed["objects"]:
        problems.append("finds no object to draw")
    if not problems:
        return None
    return (
        f"the micro world {'; '.join(problems)} in this prompt (it draws {', '.join(COLORS)} "
        f"{'s, '.join(SHAPE_WORDS)}s, small or large, moving left, right, up, down or diagonally, bouncing, "
        f"growing, shrinking or still, on {', '.join(BACKGROUNDS)} backgrounds)"
    )
