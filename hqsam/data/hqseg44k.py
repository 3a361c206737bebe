"""Download and extract HQSeg-44K (three zip archives) into a dataset root, once, and report what arrived.

The archives end in the release's tree (`hqsam.data.layout.HQSEG44K_LAYOUT`) whether or not they wrap their
folders; extraction and its guarantees are those of `hqsam.data.archives`, whose `download_coco` (COCO
val2017 and its annotations) is re-exported here for the notebooks.
"""

from typing import List, Optional, Sequence

from ..download import PathLike
from ..profiles import get_profile
from .archives import HQSEG44K_ARCHIVES, download_archives, download_coco

__all__ = ["DEFAULT_ROOT", "download_coco", "download_hqseg44k"]

DEFAULT_ROOT = get_profile("paper").data_root


def download_hqseg44k(
    root: PathLike,
    archives: Sequence[str] = HQSEG44K_ARCHIVES,
    base_url: Optional[str] = None,
    progress: bool = True,
    downloads_dir: Optional[PathLike] = None,
) -> List[str]:
    """Download the HQSeg-44K `archives` (registry names) and extract each into `root`; return those extracted now.

    See `hqsam.data.archives.download_archives` for where they are kept and when one is skipped.
    """
    unknown = [name for name in archives if name not in HQSEG44K_ARCHIVES]
    if unknown:
        raise ValueError(
            f"unknown archive(s) {', '.join(unknown)}; HQSeg-44K's are {', '.join(HQSEG44K_ARCHIVES)}"
        )
    return download_archives(root, archives, base_url=base_url, progress=progress, downloads_dir=downloads_dir)
