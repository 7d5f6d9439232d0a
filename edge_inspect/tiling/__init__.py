"""Tiling: band stitching, board segmentation and tile cutting."""
