#!/usr/bin/python3
"""Generate the small model and run the C session test on it."""
import os, subprocess, sys, tempfile
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import gen_session_model
exe = sys.argv[sys.argv.index("--exe") + 1]
with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "m.onnx")
    gen_session_model.main(p)
    sys.exit(subprocess.call([exe, p]))
