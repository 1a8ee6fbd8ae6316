"""Curation: scores -> the filtered subset Df, splits, pools and releases
(import as ``audioscope.curation``)."""
