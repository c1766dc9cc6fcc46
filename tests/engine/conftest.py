import pytest

from shunted.models import create_model


@pytest.fixture(scope="module")
def model_t():
    """A randomly initialised shunted_t in eval mode (speed and parity checks do not depend on the weights)."""
    model = create_model("shunted_t")
    model.eval()
    return model
