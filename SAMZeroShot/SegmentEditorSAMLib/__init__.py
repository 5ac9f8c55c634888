"""The Segment Editor effect "SAM" (loaded by Slicer from its file, see SegmentEditorSAM.py)."""
