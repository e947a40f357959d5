"""The 20 calcification patterns of `docs/patterns.md`: ids, labels and what each looks like.

This module is pure data (no numpy) so that the config, the docs and the tests can read the
catalogue without pulling in the renderer. How each pattern is drawn lives in `benign.py` and
`malignant.py`, keyed by the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pattern:
    """One calcification pattern: `label` is 0 (benign) or 1 (malignant); `size_mm` the lesion's
    largest dimension as quoted in patterns.md; `context` the anatomy it sits in."""

    id: str
    label: int
    name: str
    context: str
    size_mm: tuple[float, float]
    description: str


_BENIGN = (
    Pattern(
        "phlebolith",
        0,
        "phlebolith",
        "pelvic vein in fat / soft tissue",
        (2.0, 6.0),
        "round smooth calcification with a dense rim and a lucent centre (concentric)",
    ),
    Pattern(
        "tendinitis",
        0,
        "calcific tendinitis",
        "periarticular, beside a tendon near bone",
        (3.0, 15.0),
        "small dense homogeneous oval foci beside a tendon",
    ),
    Pattern(
        "chondrocalcinosis",
        0,
        "chondrocalcinosis (CPPD)",
        "joint: cartilage, meniscus",
        (1.0, 2.0),
        "thin linear calcification running parallel to the articular cartilage",
    ),
    Pattern(
        "tumoral_calcinosis",
        0,
        "tumoral calcinosis",
        "periarticular soft tissue",
        (10.0, 50.0),
        "large lobulated homogeneous masses, sometimes fluid-calcium levels",
    ),
    Pattern(
        "myositis_ossificans",
        0,
        "myositis ossificans",
        "muscle, near but apart from bone",
        (20.0, 60.0),
        "zonal: mature dense peripheral shell around a less dense centre",
    ),
    Pattern(
        "heterotopic_ossification",
        0,
        "heterotopic ossification",
        "muscle, connective tissue",
        (10.0, 50.0),
        "organised bone: cortex-like rim around a trabecular medulla",
    ),
    Pattern(
        "parasitic",
        0,
        "cysticercosis",
        "muscle",
        (2.0, 4.0),
        "many rice-grain calcifications aligned with the muscle fibres",
    ),
    Pattern(
        "injection_granuloma",
        0,
        "injection granuloma",
        "gluteal muscle / subcutaneous fat",
        (5.0, 20.0),
        "localised dense smooth calcification",
    ),
    Pattern(
        "vascular",
        0,
        "vascular (medial / atheroma)",
        "vessel wall in fat",
        (2.0, 10.0),
        "tubular tram-track or ring-shaped calcification of a vessel wall",
    ),
    Pattern(
        "calcinosis_cutis",
        0,
        "calcinosis cutis (CREST)",
        "subcutaneous fat near bone",
        (1.0, 10.0),
        "cluster of small dense subcutaneous nodules",
    ),
    Pattern(
        "enchondroma",
        0,
        "enchondroma (chondroid matrix, grade I)",
        "medullary bone",
        (10.0, 50.0),
        "abundant organised rings-and-arcs, cortex intact, no soft-tissue mass",
    ),
)

_MALIGNANT = (
    Pattern(
        "osteosarcoma_sunburst",
        1,
        "osteosarcoma (sunburst)",
        "bone + soft-tissue mass",
        (30.0, 100.0),
        "cloud-like matrix densest at the centre, spicules perpendicular to "
        "the cortex, soft-tissue mass",
    ),
    Pattern(
        "osteosarcoma_telangiectatic",
        1,
        "telangiectatic osteosarcoma",
        "bone",
        (30.0, 100.0),
        "lytic fluid-filled mass with fluid levels, thin eggshell rim, little matrix",
    ),
    Pattern(
        "chondrosarcoma_high_grade",
        1,
        "chondrosarcoma, grade III",
        "bone + soft-tissue mass, cortical destruction",
        (30.0, 100.0),
        "sparse anarchic rings-and-arcs inside a large soft-tissue mass",
    ),
    Pattern(
        "chordoma",
        1,
        "chordoma",
        "sacrum / skull base, midline",
        (30.0, 80.0),
        "heterogeneous punctate popcorn calcification in a lobulated destructive mass",
    ),
    Pattern(
        "blastic_metastasis",
        1,
        "osteoblastic metastasis (prostate)",
        "vertebra / pelvis, trabecular bone",
        (5.0, 40.0),
        "homogeneous ivory density above 1000 HU replacing trabecular bone",
    ),
    Pattern(
        "mixed_metastasis",
        1,
        "mixed metastasis (breast)",
        "bone",
        (10.0, 40.0),
        "lytic holes mixed with sclerotic patches, heterogeneous",
    ),
    Pattern(
        "pleural_plaque_malignant",
        1,
        "calcified pleural plaque (squamous carcinoma)",
        "pleura with effusion, rib",
        (20.0, 60.0),
        "irregular calcified pleural plaque with effusion and rib involvement",
    ),
    Pattern(
        "hodgkin_reticular",
        1,
        "nodular-sclerosis Hodgkin lymphoma",
        "fibrotic mass near a rib / mediastinum",
        (20.0, 50.0),
        "linear or reticular calcification in fibrotic tissue",
    ),
    Pattern(
        "tumour_necrosis_dystrophic",
        1,
        "dystrophic calcification of tumour necrosis",
        "soft-tissue mass",
        (10.0, 50.0),
        "amorphous irregular eccentric calcification inside a necrotic soft-tissue mass",
    ),
)

PATTERNS: dict[str, Pattern] = {p.id: p for p in _BENIGN + _MALIGNANT}
BENIGN_PATTERNS: tuple[str, ...] = tuple(p.id for p in _BENIGN)
MALIGNANT_PATTERNS: tuple[str, ...] = tuple(p.id for p in _MALIGNANT)

#: Patterns whose bone is only a neighbour of the finding (a long bone, pelvis or rib somewhere in
#: the patch), not its host or part of its morphology. Both classes have such patterns, so whether
#: that bone is in the patch must not tell the class: the voxel family leaves it out with one
#: probability for all of them (`PhantomConfig.bone_absent_prob`). The others
#: keep their bone: it hosts the lesion (enchondroma, the bone tumours and metastases), or its
#: relation to the finding is morphology (the tendon insertion of calcific tendinitis, the cleft
#: of myositis ossificans, the joint of chondrocalcinosis, the bony prominence that calcinosis
#: cutis overlies (seed 004), the invaded rib under a pleural plaque).
NEIGHBOUR_BONE_PATTERNS: frozenset[str] = frozenset({
    "phlebolith",
    "tumoral_calcinosis",
    "heterotopic_ossification",
    "parasitic",
    "injection_granuloma",
    "vascular",
    "hodgkin_reticular",
    "tumour_necrosis_dystrophic",
})
