"""paddle.hub entry points: ``paddle.hub.load(<repo dir>, 'shunted_s', source='local', pretrained=PATH)``."""

dependencies = ["paddle", "numpy"]

from shunted import create_model as _create_model  # noqa: E402


def shunted_t(pretrained=None, **kwargs):
    """Shunted-T (11.6 M parameters); ``pretrained``: official .pth, .pdparams or .safetensors."""
    return _create_model("shunted_t", pretrained=pretrained, **kwargs)


def shunted_s(pretrained=None, **kwargs):
    """Shunted-S (22.4 M parameters); ``pretrained``: official .pth, .pdparams or .safetensors."""
    return _create_model("shunted_s", pretrained=pretrained, **kwargs)


def shunted_b(pretrained=None, **kwargs):
    """Shunted-B (39.6 M parameters); ``pretrained``: official .pth, .pdparams or .safetensors."""
    return _create_model("shunted_b", pretrained=pretrained, **kwargs)
