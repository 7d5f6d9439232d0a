"""Good and labelled image data as uint8 tiles for training, evaluation and parity checks:
MVTec-layout folders, folders of images and recorded or synthetic scans. numpy/OpenCV only (no
torch), so tiles can be prepared on a box without the train extra."""
