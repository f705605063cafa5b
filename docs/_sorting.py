"""The gallery's order of the tutorials: by their number (tutorial_10 after tutorial_9), not by file name."""

import re


class TutorialNumberSortKey:
    """sphinx-gallery ``within_subsection_order``: instantiated with the gallery's source folder, called with a
    file name; ``tutorial_<n>_*.py`` sort by ``n``, anything else after them by name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        found = re.match(r"tutorial_(\d+)", str(filename))
        return (int(found.group(1)) if found else 1 << 30, str(filename))

    def __repr__(self):
        return f"<{type(self).__name__}>"
