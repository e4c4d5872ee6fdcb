"""kdscale: scaling studies of knowledge distillation (arXiv 2510.15516).

Importing the package is cheap: torch, Ray and MLflow are imported by the modules that use them.
"""
__version__ = "0.1.0"
