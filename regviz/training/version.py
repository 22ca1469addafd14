"""The version of the training math: part of every store key, so that stored runs are never stale."""

# bump when the training math or the record fields change: stored runs of older versions are never served
TRAINING_VERSION = "3"  # 3: fused optimizer kernels below 64 units (float rounding differs)
