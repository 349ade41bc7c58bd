"""The micro world: a procedural, captioned video world with exact ground truth (docs/architecture.md §5).

``vocab`` is the closed vocabulary (colors, shapes, sizes, motions, backgrounds); ``scene`` samples a
clip's objects and their per-frame tracks; ``render`` draws the pixels; ``captions`` writes varied
captions and parses them back; ``writer`` makes a resumable folder of clips; ``metrics`` recovers the
objects from a clip's pixels and scores the clip against its prompt (the world's own measuring stick, used
by training's evaluation, ``s2dit eval micro`` and the trajectory cache's prompt files).
"""
