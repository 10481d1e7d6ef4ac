"""The package layout only; all metadata lives in pyproject.toml.

The degradation recipes live in degradations/ at the top of the repository (where users look
for them); wheels carry them inside the package as realciao.degradations.recipes. pyproject's
package discovery cannot map one extra folder beside a discovered package, so it is done here.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["realciao", "realciao.*"]) + ["realciao.degradations.recipes"],
    package_dir={"realciao.degradations.recipes": "degradations"},
    package_data={"realciao.degradations.recipes": ["*.yml"]},
)
