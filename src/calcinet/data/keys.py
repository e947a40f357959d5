"""Keys of the record dicts that the sources write and the MONAI transforms and the training
module read. Standard library only, so that the manifest check imports them without MONAI."""

#: Record key of a finding's centre: ``{"center": [x, y, z], "coord_space": ...}`` or absent.
FINDING_KEY = "finding"
#: Key of a sample's HU quantiles (:func:`calcinet.imaging.hu_quantiles`), kept for the model's
#: intensity profile.
QUANTILES_KEY = "hu_quantiles"
