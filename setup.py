from setuptools import find_packages, setup

setup(
    name="autoprox",
    version="0.1.0",
    description="Genetic-programming discovery of zero-cost proxies for Vision Transformer search",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["gp_proxy", "gp_proxy.*", "vit_space", "vit_space.*"]),
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "timm>=1.0",
        "deap>=1.4",
        "numpy>=1.24",
        "scipy>=1.10",
        "sympy>=1.12",
        "networkx>=3.0",
        "matplotlib>=3.7",
        "scikit-image>=0.21",
        "scikit-learn>=1.2",
        "tqdm>=4.60",
        "dask[distributed]>=2024.1",
    ],
    package_data={"vit_space": ["benchmarks/*.json", "benchmarks/*.jsonl", "batches/*.npz"]},
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3.5", "hypothesis>=6", "ruff==0.17.6"],
    },
    entry_points={"console_scripts": ["autoprox=vit_space.cli:main"]},
)
