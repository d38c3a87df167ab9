"""Image datasets: mnist5k (embedded), mnist (IDX files / download), ffhq (image folder)."""
