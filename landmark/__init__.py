"""landmark: a reproducible pipeline for Google Landmark Recognition, after Yep & Chen, "Xceptional Landmark
Recognition" (Kaggle GLR 2019)."""
