"""Writes demo_data.h/.cc for the stand-in engine: four noisy prototypes.

Usage: python make_demo_data.py OUT_DIR
"""

import sys
from pathlib import Path

import numpy as np

INPUT_SIZE, CLASSES, TIME_STEPS = 16, 4, 4


def make(count, rng, prototypes):
    labels = rng.integers(0, CLASSES, size=count)
    x = prototypes[labels][:, None, :] + rng.normal(0, 25, size=(count, TIME_STEPS, INPUT_SIZE))
    return np.clip(np.round(x), -128, 127).astype(np.int8), labels.astype(np.uint8)


def c_array(ctype, name, values):
    body = ",".join(str(int(v)) for v in values.reshape(-1))
    return f"const {ctype} {name}[{values.size}] = {{{body}}};\n"


def main(out_dir):
    rng = np.random.default_rng(7)
    prototypes = rng.integers(-100, 100, size=(CLASSES, INPUT_SIZE))
    learn_x, learn_y = make(200, rng, prototypes)
    test_x, test_y = make(100, rng, prototypes)
    out = Path(out_dir)
    (out / "demo_data.h").write_text(
        "#ifndef TESS_DEMO_DATA_H_\n#define TESS_DEMO_DATA_H_\n#include <stdint.h>\n"
        f"#define TESS_DEMO_LEARN_COUNT {len(learn_y)}\n#define TESS_DEMO_TEST_COUNT {len(test_y)}\n"
        "extern const int8_t tess_demo_learn_inputs[];\nextern const uint8_t tess_demo_learn_labels[];\n"
        "extern const int8_t tess_demo_test_inputs[];\nextern const uint8_t tess_demo_test_labels[];\n#endif\n"
    )
    (out / "demo_data.cc").write_text(
        '#include "demo_data.h"\n'
        + c_array("int8_t", "tess_demo_learn_inputs", learn_x)
        + c_array("uint8_t", "tess_demo_learn_labels", learn_y)
        + c_array("int8_t", "tess_demo_test_inputs", test_x)
        + c_array("uint8_t", "tess_demo_test_labels", test_y)
    )


if __name__ == "__main__":
    main(sys.argv[1])
