"""The emulated device's array: NumPy computes on device-memory buffers, and
nothing reaches the host without being asked for (.get(), int(), ...) and counted."""

from __future__ import annotations

import operator
from typing import Any, Callable

import numpy as np

from ._memory import Allocation, count


class ndarray:
    """An array in emulated device memory, like cupy.ndarray: operations give
    device arrays, and it never turns into a NumPy array implicitly."""

    __slots__ = ("_data", "_allocation")
    __array_ufunc__ = None  # NumPy operators defer to ours, which refuse host arrays
    __hash__ = None  # == is elementwise

    def __init__(self, shape, dtype=float):
        self._allocation = Allocation(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
        self._data = _typed(self._allocation.body, shape, dtype)

    @classmethod
    def _of(cls, data: np.ndarray, allocation: Allocation) -> "ndarray":
        a = object.__new__(cls)
        a._data, a._allocation = data, allocation
        return a

    # -- what a GPU array shows without a copy ---------------------------------------
    dtype = property(lambda self: self._data.dtype)
    shape = property(lambda self: self._data.shape)
    size = property(lambda self: self._data.size)
    nbytes = property(lambda self: self._data.nbytes)
    ndim = property(lambda self: self._data.ndim)
    itemsize = property(lambda self: self._data.itemsize)
    strides = property(lambda self: self._data.strides)
    flags = property(lambda self: self._data.flags)
    T = property(lambda self: self.transpose())

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:  # no values: showing them would be a hidden copy to the host
        return f"<emulated device array shape={self.shape} dtype={self.dtype}>"

    def __array__(self, *args, **kwargs):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed (emulated device, as CuPy): "
            "use .get() to copy it to the host"
        )

    # -- device -> host (counted) ----------------------------------------------------
    def get(self, stream=None, order="C", out=None, blocking=True) -> np.ndarray:
        if out is not None:
            raise NotImplementedError("emulated device: get(out=...)")
        count("to_host", self.nbytes)
        return np.array(self._data, order=order, copy=True)

    def _scalar(self):
        if self.size != 1:
            raise TypeError(f"only size-1 arrays convert to Python scalars, this one has {self.size} items")
        count("to_host", self.nbytes)
        return self._data.reshape(()).item()

    def item(self):
        return self._scalar()

    def tolist(self):
        return self.get().tolist()

    def __int__(self) -> int:
        return int(self._scalar())

    def __float__(self) -> float:
        return float(self._scalar())

    def __complex__(self) -> complex:
        return complex(self._scalar())

    def __bool__(self) -> bool:
        return bool(self._scalar())

    # -- host -> device and device -> device (counted) ---------------------------------
    def set(self, arr, stream=None) -> None:
        if not isinstance(arr, np.ndarray) or arr.shape != self.shape:
            raise ValueError("set() takes a NumPy array of the same shape")
        count("to_device", arr.nbytes)
        self._data[...] = arr

    def copy(self, order="C") -> "ndarray":
        count("on_device", self.nbytes)
        return to_new_allocation(np.array(self._data, order=order, copy=True))

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True) -> "ndarray":
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        return to_new_allocation(self._data.astype(dtype, order=order))

    # -- indexing ---------------------------------------------------------------------
    def __getitem__(self, key) -> "ndarray":
        key = _index(key)
        # A trailing Ellipsis makes NumPy return a 0-d view for a full integer
        # index instead of a scalar, as CuPy does.
        if not any(k is Ellipsis for k in key):
            key += (Ellipsis,)
        return device_result(self._data[key], [self._allocation])

    def __setitem__(self, key, value) -> None:
        key = _index(key)
        if isinstance(value, ndarray):
            count("on_device", value.nbytes)
            value = value._data
        elif isinstance(value, (np.ndarray, list, tuple)):
            value = np.asarray(value)
            count("to_device", value.nbytes)
        elif not np.isscalar(value):
            raise TypeError(f"cannot assign a {type(value).__name__} to an emulated device array")
        self._data[key] = value


def _typed(body: np.ndarray, shape, dtype) -> np.ndarray:
    return body.view(np.dtype(dtype)).reshape(shape)


def new(shape, dtype) -> ndarray:
    """An uninitialized device array (cupy.empty): every byte UNWRITTEN."""
    return ndarray(shape, dtype)


def to_new_allocation(values: np.ndarray) -> ndarray:
    """A new device array holding `values`, computed on the device (nothing moves)."""
    values = np.asarray(values)
    if values.dtype.hasobject or values.dtype.kind in "USV":
        raise TypeError(f"unsupported dtype {values.dtype} (CuPy has numeric and bool arrays only)")
    out = new(values.shape, values.dtype)
    out._data[...] = values
    return out


def from_host(values: np.ndarray) -> ndarray:
    """cudaMemcpy host -> device of a NumPy array: counted."""
    out = to_new_allocation(values)
    count("to_device", out.nbytes)
    return out


def device_result(value, sources: list[Allocation]):
    """Wraps what NumPy computed on device buffers: a view of a source's
    memory stays a view of that allocation; anything else gets its own."""
    if isinstance(value, tuple):
        return tuple(device_result(v, sources) for v in value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, np.ndarray):
        for allocation in sources:
            if allocation.holds(value):
                return ndarray._of(value, allocation)
    return to_new_allocation(value)


def unwrap(value, what: str, sources: list[Allocation]):
    """A device array's buffer for NumPy to compute on; host arrays are
    refused, as CuPy refuses them (it would have to copy them silently)."""
    if isinstance(value, ndarray):
        sources.append(value._allocation)
        return value._data
    if isinstance(value, np.ndarray):
        raise TypeError(f"{what}: a host (NumPy) array where a device array is needed; copy it with cupy.asarray")
    if isinstance(value, (list, tuple)) and any(isinstance(v, (ndarray, np.ndarray)) for v in value):
        return type(value)(unwrap(v, what, sources) for v in value)
    return value


def device_function(name: str, func: Callable) -> Callable:
    """`func` (a NumPy function) as a function of the emulated device."""

    def on_device(*args, **kwargs):
        sources: list[Allocation] = []
        args = tuple(unwrap(a, f"cupy.{name}", sources) for a in args)
        kwargs = {k: unwrap(v, f"cupy.{name}", sources) for k, v in kwargs.items()}
        return device_result(func(*args, **kwargs), sources)

    on_device.__name__ = name
    on_device.__doc__ = f"numpy.{name} on the emulated device."
    return on_device


def _index(key) -> tuple:
    """An index as a tuple; index arrays from the host are uploaded (counted), as CuPy does."""
    parts = key if isinstance(key, tuple) else (key,)
    out: list[Any] = []
    for k in parts:
        if isinstance(k, ndarray):
            k = k._data
        elif isinstance(k, (np.ndarray, list)):
            k = np.asarray(k)
            count("to_device", k.nbytes)
        out.append(k)
    return tuple(out)


# -- operators: NumPy's meaning, device arrays and scalars only ---------------------------
def _binary(op: Callable, reflected: bool = False) -> Callable:
    def method(self: ndarray, other):
        sources = [self._allocation]
        other = unwrap(other, f"operator {op.__name__}", sources)
        if isinstance(other, (list, tuple)):
            raise TypeError(f"operator {op.__name__}: a host sequence where a device array is needed")
        return device_result(op(other, self._data) if reflected else op(self._data, other), sources)

    return method


def _inplace(op: Callable) -> Callable:
    def method(self: ndarray, other):
        other = unwrap(other, f"operator {op.__name__}", [])
        op(self._data, other)
        return self

    return method


def _unary(op: Callable) -> Callable:
    return lambda self: device_result(op(self._data), [self._allocation])


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor", "lshift", "rshift"):
    _op = getattr(operator, f"{_name}_" if _name in ("and", "or") else _name)
    setattr(ndarray, f"__{_name}__", _binary(_op))
    setattr(ndarray, f"__r{_name}__", _binary(_op, reflected=True))
    setattr(ndarray, f"__i{_name}__", _inplace(getattr(operator, f"i{_name}")))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_name}__", _binary(getattr(operator, _name)))
for _name in ("neg", "pos", "invert", "abs"):
    setattr(ndarray, f"__{_name}__", _unary(getattr(operator, _name)))


# ndarray methods that CuPy has with NumPy's meaning, run on the device
# buffer: views stay views of the allocation. Adding one is one name here.
DEVICE_METHODS = (
    "all",
    "any",
    "argmax",
    "argmin",
    "argsort",
    "cumsum",
    "fill",
    "max",
    "min",
    "nonzero",
    "ravel",
    "reshape",
    "sort",
    "sum",
    "transpose",
    "view",
)


def _method(name: str) -> Callable:
    def method(self: ndarray, *args, **kwargs):
        sources = [self._allocation]
        args = tuple(unwrap(a, f"ndarray.{name}", sources) for a in args)
        kwargs = {k: unwrap(v, f"ndarray.{name}", sources) for k, v in kwargs.items()}
        return device_result(getattr(self._data, name)(*args, **kwargs), sources)

    method.__name__ = name
    return method


for _name in DEVICE_METHODS:
    setattr(ndarray, _name, _method(_name))
