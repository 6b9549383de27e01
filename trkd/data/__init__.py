"""Kaldi data directories, trial lists, datasets and augmentation."""
