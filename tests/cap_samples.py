"""The CAP samples the tests read, kept in the repository (tests/data/cap-samples/).

The names are listed here rather than globbed: a sample lost from a checkout
then fails the tests that name it (FileNotFoundError), instead of quietly
shrinking the parametrised set to nothing.
"""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "data" / "cap-samples"

SAMPLE_NAMES: tuple[str, ...] = (
    "google-PAAQ-4-mg5a94.xml",
    "ipaws-5e6dd964023f1930ef638846.xml",
    "ipaws-5e6dd9de023f1930ef6548d9.xml",
    "ipaws-5e6ddbad023f1930ef6c1a5a.xml",
    "ipaws-5e7e0fc5023f1930efcf3deb.xml",
    "ipaws-5ea321f39fc226a7b44b6874.xml",
    "nws-5c2cf27b1f56885d61654dc47fa411d5.xml",
    "v1dot0_appendix_adot1.xml",
    "v1dot0_appendix_adot2.xml",
    "v1dot0_appendix_adot3.xml",
    "v1dot0_appendix_adot4.xml",
    "v1dot1_appendix_adot1.xml",
    "v1dot1_appendix_adot2.xml",
    "v1dot1_appendix_adot3.xml",
    "v1dot1_appendix_adot4.xml",
    "v1dot2_appendix_adot1.xml",
    "v1dot2_appendix_adot2.xml",
    "v1dot2_appendix_adot3.xml",
    "v1dot2_appendix_adot4.xml",
)

# The CAP 1.2 appendix A.3 example: an Update of an alert nobody sent us.
EARTHQUAKE_UPDATE = SAMPLES / "v1dot2_appendix_adot3.xml"


def sample(name: str) -> bytes:
    """The bytes of one sample; raises FileNotFoundError when it is missing."""
    return (SAMPLES / name).read_bytes()
