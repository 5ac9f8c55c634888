"""SAMZeroShot library: zero-shot lung segmentation with Segment Anything.

Everything here runs without Qt: the Slicer module and the command line share it.
"""

__version__ = "0.1.0"
