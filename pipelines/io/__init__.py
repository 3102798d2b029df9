"""Reading and writing files: atomic writes, medical image formats (nibabel, SimpleITK)."""
