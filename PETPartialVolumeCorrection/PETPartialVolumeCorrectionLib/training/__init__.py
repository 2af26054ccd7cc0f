"""Training the 3D ResUNet on simulated or user-supplied PET pairs."""
