"""Maps the top-level folders onto the one import namespace ``hilnas.*``.

Metadata lives in pyproject.toml; only the package discovery is here, because it needs a loop.
"""
from setuptools import find_packages, setup

ROOTS = {"protos": "hilnas.protos", "agent": "hilnas.agent", "server": "hilnas.server",
         "searchers": "hilnas.searchers"}

package_dir = {"hilnas": "hilnas"}
packages = ["hilnas"]
for folder, name in ROOTS.items():
    package_dir[name] = folder
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=package_dir)
