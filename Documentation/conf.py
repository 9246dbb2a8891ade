# SPDX-License-Identifier: GPL-2.0
#
# Sphinx configuration for kmcl's documentation: `make docs` renders it
# into out/docs/ (sphinx-build -W: a warning is an error).  The API
# reference (api-reference.rst) is read from include/kmcl/kmcl.h by the
# kernel's own kernel-doc extension, taken from a kernel source tree:
# `srctree` (or KSRC) must name one (make docs uses kmcl's test kernel's).

import os
import sys

srctree = os.environ.get("srctree") or os.environ.get("KSRC")
if not srctree or not os.path.isfile(os.path.join(srctree, "Documentation/sphinx/kerneldoc.py")):
    sys.exit("conf.py: set srctree (or KSRC) to a Linux 7.x source tree (the kernel-doc extension)")
os.environ["srctree"] = srctree
sys.path.insert(0, os.path.join(srctree, "Documentation/sphinx"))

project = "kmcl"
copyright = "kmcl developers, GPL-2.0"
extensions = ["kerneldoc"]
# kernel-doc directives name files relative to kmcl's top directory.
kerneldoc_srctree = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
master_doc = "index"
exclude_patterns = []
highlight_language = "none"
html_theme = "alabaster"
html_show_sourcelink = False
