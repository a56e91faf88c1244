"""anyxp: multilayer perceptrons written once against the Python Array API standard.

The same code trains on NumPy (CPU), CuPy (CUDA GPU), PyTorch or array-api-strict:

>>> import anyxp as ax
>>> net = ax.Network([ax.Dense(20, "sigmoid"), ax.Dense(10, "softmax")], input_size=64,
...                  optimizer=ax.SGD(lr=0.1), backend="auto", seed=0)
"""

from . import data, schedules
from .activations import (
    ELU,
    GELU,
    SELU,
    Activation,
    HardSigmoid,
    Identity,
    LeakyReLU,
    LogSoftmax,
    Mish,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from .backend import Backend, BackendStatus, available_backends, get_backend
from .backup import BackupAndRestore
from .base import Layer
from .callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
)
from .checkpoint import load
from .errors import (
    AnyxpError,
    BackendFallbackWarning,
    BackendUnavailableError,
    CheckpointError,
    TrainingDivergedError,
)
from .gradcheck import check_gradients
from .layers import Dense, Dropout
from .losses import MAE, MSE, BinaryCrossEntropy, CrossEntropy, Huber, KLDivergence, Loss, Poisson
from .metrics import Metric, TopKAccuracy, accuracy, confusion_matrix
from .network import Network
from .normalization import BatchNorm, LayerNorm
from .optimizers import SGD, Adagrad, Adam, Adamax, AdamW, Lion, NAdam, Optimizer, RAdam, RMSprop
from .registry import register

__version__ = "0.1.0"

# Submodules reachable as attributes after ``import anyxp``, imported on first use (they
# import heavier libraries: scikit-learn, onnx, mpi4py), so ``import anyxp`` stays light.
_LAZY_SUBMODULES = ("datasets", "distributed", "onnx", "sklearn")


def __getattr__(name: str) -> object:
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'anyxp' has no attribute {name!r}")

__all__ = [
    "ELU",
    "GELU",
    "MAE",
    "MSE",
    "SELU",
    "SGD",
    "Activation",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "AnyxpError",
    "Backend",
    "BackendFallbackWarning",
    "BackendStatus",
    "BackendUnavailableError",
    "BackupAndRestore",
    "BatchNorm",
    "BinaryCrossEntropy",
    "CSVLogger",
    "Callback",
    "CheckpointError",
    "CrossEntropy",
    "Dense",
    "Dropout",
    "EarlyStopping",
    "HardSigmoid",
    "History",
    "Huber",
    "Identity",
    "KLDivergence",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "LearningRateScheduler",
    "Lion",
    "LogSoftmax",
    "Loss",
    "Metric",
    "Mish",
    "ModelCheckpoint",
    "NAdam",
    "Network",
    "Optimizer",
    "Poisson",
    "RAdam",
    "RMSprop",
    "ReLU",
    "ReduceLROnPlateau",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "TopKAccuracy",
    "TrainingDivergedError",
    "__version__",
    "accuracy",
    "available_backends",
    "check_gradients",
    "confusion_matrix",
    "data",
    "get_backend",
    "load",
    "register",
    "schedules",
]
