"""Data: the synthetic phantom, record sources, MONAI transforms and the DataModule."""
