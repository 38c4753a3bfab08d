"""Build script: declares the Cython core in ext/ as ``dynamo_sessions._core_c``
(``_core_c.pyx`` and the ``.pxi`` parts it includes).

``DYNAMO_SESSIONS_NO_EXTENSIONS=1`` at build time makes a pure-Python build.  Otherwise the
extension must compile: a failed compile fails the build loudly instead of quietly shipping the
slow twin (the pure-Python wheel is published separately for platforms without a compiler).
"""

import glob
import os
import sys

from setuptools import Extension, setup

NO_EXTENSIONS = os.environ.get("DYNAMO_SESSIONS_NO_EXTENSIONS", "") not in ("", "0")

if NO_EXTENSIONS:
    print("*********************\n* Pure Python build *\n*********************", file=sys.stderr)
    ext_modules = []
else:
    from Cython.Build import cythonize

    print("**********************\n* Accelerated build  *\n**********************", file=sys.stderr)
    ext_modules = cythonize(
        [
            Extension(
                "dynamo_sessions._core_c",
                ["ext/_core_c.pyx"],
                # the header and the parts _core_c.pyx includes (a change rebuilds the module)
                depends=["ext/_core_c.h", *sorted(glob.glob("ext/*.pxi"))],
                # -O3 inlines the codec's per-value writers (setuptools passes /Ox to MSVC).
                extra_compile_args=[] if sys.platform == "win32" else ["-O3"],
            )
        ],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": False,  # keep __doc__ identical to the twin's
        },
    )

setup(ext_modules=ext_modules)
