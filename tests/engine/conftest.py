import numpy as np
import pytest

from shunted.factory import create_model


@pytest.fixture(scope="module")
def model_t():
    """A randomly initialised shunted_t in eval mode (speed and parity checks do not depend on the weights)."""
    model = create_model("shunted_t")
    model.eval()
    return model


@pytest.fixture(scope="module")
def demo_checkpoint(shared_dir):
    import shunted.convert

    if not hasattr(shunted.convert, "read_weights"):
        pytest.skip("shunted.convert.read_weights is not available yet")
    return shared_dir / "demo" / "ckpt_T_cifar10_fp16.pth"


@pytest.fixture(scope="module")
def cifar_batch(shared_dir):
    from shunted.data.transforms import EvalTransform
    from shunted.models import get_pretrained_cfg

    transform = EvalTransform.from_config(get_pretrained_cfg("shunted_t"), img_size=64)
    files = [
        sorted((shared_dir / "data" / "cifar10" / "test" / c).glob("*"))[0] for c in ("cat", "ship", "frog")
    ]
    return np.stack([transform.load(f) for f in files])
