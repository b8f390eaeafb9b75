"""Save and load a :class:`~label_tools.model.Model` in a format that loads without running code.

The file is a skops archive (a zip of a JSON schema plus ``.npy`` arrays, read with
``allow_pickle=False``): loading rebuilds objects only from an explicit list of types, never by
unpickling. Before anything is rebuilt, every type the schema names is checked against
:data:`ALLOWED_TYPES` (the random forest, its trees, numpy arrays and scalars, plain containers);
a file naming any other type (``os.system``, a pickle, a custom class) is refused without being
loaded. A plain pickle or joblib file is not a zip archive and is refused before it is opened as
one. A small ``label_tools.json`` member beside the schema holds the format name and version, so a
file from an unreadable format version is recognised before its content is touched.

Layout of the stored dict (``FORMAT_VERSION`` 1)::

    format, format_version, label_tools (version), versions (library versions, dict of str)
    classifier      fitted RandomForestClassifier / ExtraTreesClassifier (or a single tree)
    class_names     list of str, K
    class_colors    uint8 (K, 3) RGB
    settings        JSON text of pipeline.Settings (crf as a dict)
    n_bands         int, feature bands the model expects
    band_names      list of str
    stretch         None, or {"dtype": str, "lo": float32 (n_bands,), "hi": float32 (n_bands,)}
    X, y            float32 (N, F) training samples, int64 (N,) 0-based class ids
    chosen, info    JSON text (per-image choices; provenance)
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, fields

import numpy as np

from .errors import InputError, OutputError

FORMAT = "label_tools.model"
FORMAT_VERSION = 1
HEADER = "label_tools.json"

#: Every type a model file may name. skops rebuilds sklearn estimators and numpy arrays from
#: their state, not by unpickling; the tree structure (``sklearn.tree._tree.Tree``) is the one
#: type skops itself does not trust by default, so it is passed to ``skops.io.load`` explicitly.
ALLOWED_TYPES = frozenset({
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.NoneType",
    "numpy.ndarray", "numpy.int64", "numpy.int32", "numpy.float64", "numpy.float32", "numpy.uint8", "numpy.bool_",
    "numpy.dtype", "numpy.dtypes.Float64DType", "numpy.dtypes.Int64DType",
    "sklearn.ensemble._forest.RandomForestClassifier", "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier", "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._tree.Tree",
})
SKOPS_TRUSTED = ["sklearn.tree._tree.Tree"]


def _skops():
    try:
        import skops.io as sio
    except ImportError:
        # another thread may be importing scikit-learn right now (cli._prefetch_imports): a partly
        # initialised module then fails this import once; import it here, in this thread, and retry
        try:
            import sklearn.ensemble  # noqa: F401
            import skops.io as sio
        except ImportError as e:  # an install requirement; say how to get it back
            raise InputError(f"model files need the skops package ({e}): pip install skops") from e
    return sio


def save_model(model, path: str):
    """Write ``model`` to ``path`` (exactly that path, atomically).

    Parameters
    ----------
    model : label_tools.model.Model
    path : str

    Raises
    ------
    OutputError
        The classifier is of a type the format does not allow, or the file cannot be written.
    """
    from . import __version__
    from .files import atomic_path, remove_orphans
    from .writers import versions

    sio = _skops()
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "label_tools": __version__,
        "versions": {str(k): str(v) for k, v in versions().items()},
        "classifier": model.classifier,
        "class_names": [str(n) for n in model.classes.names],
        "class_colors": np.asarray(model.classes.colors, np.uint8),
        "settings": json.dumps(_settings_to_dict(model.settings)),
        "n_bands": int(model.n_bands),
        "band_names": [str(b) for b in (model.band_names or ())],
        "stretch": None if model.stretch is None else {
            "dtype": str(model.stretch["dtype"]),
            "lo": np.asarray(model.stretch["lo"], np.float32), "hi": np.asarray(model.stretch["hi"], np.float32)},
        "X": np.ascontiguousarray(model.X, np.float32),
        "y": np.ascontiguousarray(model.y, np.int64),
        "chosen": json.dumps(model.chosen, default=_plain),
        "info": json.dumps(model.info, default=_plain),
    }
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "label_tools": __version__}
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OutputError(f"--save-model: directory {directory!r} does not exist; create it or choose another path")
    remove_orphans(directory)  # an earlier save's temporary file, left by a kill -9
    try:
        with atomic_path(path) as tmp:
            sio.dump(payload, tmp, compression=zipfile.ZIP_DEFLATED)
            bad = _outside_allowed(_schema_types(tmp))
            if bad:
                raise OutputError(f"--save-model: the classifier holds types a model file cannot carry "
                                  f"({', '.join(bad)}); use the default random forest")
            with zipfile.ZipFile(tmp, "a") as z:
                z.writestr(HEADER, json.dumps(header))
    except OSError as e:
        if isinstance(e, OutputError):
            raise
        raise OutputError(f"--save-model: cannot write {path!r} ({e.strerror or e})") from None


def read_header(path: str) -> dict:
    """The format header of a model file (format, format_version, label_tools) without loading it.

    Raises
    ------
    InputError
        Missing, unreadable, or not a label_tools model file.
    """
    if not os.path.exists(path):
        raise InputError(f"--model: {path!r} does not exist")
    if os.path.isdir(path):
        raise InputError(f"--model: {path!r} is a directory; expected a model file written by --save-model")
    from .imagecheck import check_regular_file

    check_regular_file(path, "--model")
    try:
        if os.path.getsize(path) == 0:  # an interrupted copy; "not a model file" would send the user astray
            raise InputError(f"--model: {path!r} is empty (0 bytes): an interrupted copy or download? copy it "
                             "again, or write it again with --save-model")
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as f:
                zip_start = f.read(4) == b"PK\x03\x04"
            if zip_start:  # a zip archive's start without its end (central directory): a copy cut short
                raise InputError(f"--model: {path!r} is damaged or incomplete (a zip archive whose end is missing, "
                                 "as a copy or download cut short leaves); copy it again, or write it again with "
                                 "--save-model")
            raise InputError(f"--model: {path!r} is not a label_tools model file (expected a skops archive "
                             "written by --save-model; pickle/joblib files are never loaded)")
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if HEADER not in names or "schema.json" not in names:
                raise InputError(f"--model: {path!r} is a zip archive but not a label_tools model file "
                                 "(no label_tools.json header); write one with --save-model")
            header = json.loads(z.read(HEADER))
    except (OSError, zipfile.BadZipFile, ValueError, UnicodeDecodeError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"--model: cannot read {path!r} ({getattr(e, 'strerror', None) or e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InputError(f"--model: {path!r} is not a label_tools model file (header format "
                         f"{header.get('format') if isinstance(header, dict) else header!r})")
    return header


def load_model(path: str):
    """Read a model file written by :func:`save_model`; nothing in the file is executed.

    Parameters
    ----------
    path : str

    Returns
    -------
    label_tools.model.Model

    Raises
    ------
    InputError
        Not a model file, a format version this label_tools cannot read, types outside
        :data:`ALLOWED_TYPES`, or inconsistent content.
    """
    from . import __version__
    from .classes import Classes
    from .model import Model

    header = read_header(path)
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(
            f"--model: {path!r} was written by label_tools {header.get('label_tools', '?')} in model format "
            f"{version}; this label_tools ({__version__}) reads format {FORMAT_VERSION} only: use a matching "
            "label_tools version, or train the model again with --save-model")
    try:
        types = _schema_types(path)
    except (OSError, zipfile.BadZipFile, ValueError, KeyError) as e:
        raise InputError(f"--model: {path!r} is damaged ({e})") from None
    bad = _outside_allowed(types)
    if bad:
        raise InputError(f"--model: {path!r} holds types outside the trusted list ({', '.join(bad)}); "
                         "refused without loading it (only files written by --save-model are accepted)")
    sio = _skops()
    try:
        d = sio.load(path, trusted=SKOPS_TRUSTED)
    except Exception as e:  # skops raises several types for damaged or untrusted content
        import zlib

        if isinstance(e, (zipfile.BadZipFile, zlib.error, EOFError)):  # a flipped or lost byte in a member
            kind = "zlib" if isinstance(e, zlib.error) else type(e).__name__
            raise InputError(f"--model: {path!r} is damaged ({kind}: {_first_line(e)}); copy it again, "
                             "or write it again with --save-model") from None
        raise InputError(f"--model: cannot load {path!r} ({type(e).__name__}: {_first_line(e)})") from None
    try:
        clf = d["classifier"]
        names = tuple(str(n) for n in d["class_names"])
        colors = np.asarray(d["class_colors"], np.uint8).reshape(len(names), 3)
        settings = _settings_from_dict(json.loads(d["settings"]))
        X = np.asarray(d["X"], np.float32)
        y = np.asarray(d["y"], np.int64)
        n_bands = int(d["n_bands"])
        st = d.get("stretch")
        stretch = None if st is None else {"dtype": str(st["dtype"]), "lo": np.asarray(st["lo"], np.float32),
                                           "hi": np.asarray(st["hi"], np.float32)}
        chosen = json.loads(d["chosen"])
        info = json.loads(d["info"])
        band_names = tuple(d.get("band_names") or ())
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"--model: {path!r} is not a complete label_tools model ({type(e).__name__}: {e})") from None
    from .features import n_features

    n_feat = n_features(n_bands, settings.sigmas)
    if getattr(clf, "n_features_in_", n_feat) != n_feat or X.ndim != 2 or X.shape[1] != n_feat or len(X) != len(y):
        raise InputError(f"--model: {path!r} is inconsistent: {n_bands} bands and {len(settings.sigmas)} sigmas "
                         f"make {n_feat} features, but the classifier expects {getattr(clf, 'n_features_in_', '?')} "
                         f"and the samples have {X.shape[1] if X.ndim == 2 else X.shape}")
    ids = np.asarray(getattr(clf, "classes_", np.zeros(0)))
    if (ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= len(names))) or \
            (y.size and (y.min() < 0 or y.max() >= len(names))):
        # a class list edited or cut short: the forest would answer with ids that have no name (IndexError)
        top = int(max(ids.max() if ids.size and ids.dtype.kind in "iu" else -1, y.max() if y.size else -1))
        raise InputError(f"--model: {path!r} is inconsistent: its forest and samples use class ids up to {top} "
                         f"but it names {len(names)} class{'es' if len(names) != 1 else ''} ({', '.join(names)}); "
                         "write it again with --save-model")
    if len(names) < 2 or not hasattr(clf, "predict_proba"):
        raise InputError(f"--model: {path!r} is not a usable model (fewer than two classes or no classifier)")
    info = dict(info)
    info["file"] = {"path": os.path.abspath(path), "label_tools": d.get("label_tools"), "versions": d.get("versions")}
    return Model(clf, Classes(names, colors), settings, n_bands, X, y, chosen=chosen, info=info,
                 stretch=stretch, band_names=band_names)


#: skops nodes that rebuild a reference to a function or method (and can call it): a model file never
#: holds one. What such a node names is in its content, not in its ``__class__``/``__module__``
#: (which the file may set to anything, e.g. ``builtins.dict``), so the node itself is refused.
CALLABLE_LOADERS = frozenset({"FunctionNode", "MethodNode", "PartialNode", "OperatorFuncNode"})


def _schema_types(path: str) -> list:
    """Every ``module.class`` the archive's schema names (read as JSON, nothing rebuilt); a node that
    rebuilds a function is listed as ``function <module.name>`` (never allowed)."""
    with zipfile.ZipFile(path) as z:
        schema = json.loads(z.read("schema.json"))
    found = set()
    stack = [schema]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            if "__class__" in o or "__module__" in o:
                found.add(f"{o.get('__module__')}.{o.get('__class__')}")
            if o.get("__loader__") in CALLABLE_LOADERS:
                c = o.get("content") if isinstance(o.get("content"), dict) else {}
                target = ".".join(str(c[k]) for k in ("module_path", "function") if k in c) or o["__loader__"]
                found.add(f"function {target}")
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return sorted(found)


def _outside_allowed(types) -> list:
    return [t for t in types if t not in ALLOWED_TYPES]


def _settings_to_dict(settings) -> dict:
    d = asdict(settings)
    d["sigmas"] = [float(s) for s in settings.sigmas]
    return d


def _settings_from_dict(d: dict):
    """pipeline.Settings from a stored dict; fields this version does not know are ignored, missing ones default."""
    from .crf import CRFParams
    from .pipeline import Settings

    known = {f.name for f in fields(Settings)}
    kw = {k: v for k, v in d.items() if k in known}
    if "sigmas" in kw:
        kw["sigmas"] = tuple(float(s) for s in kw["sigmas"])
    kw.setdefault("standardise", False)  # models saved before it existed were fitted on unstandardised bands
    if kw.get("band_stats") is not None:
        kw["band_stats"] = tuple(tuple(float(v) for v in part) for part in kw["band_stats"])
    if isinstance(kw.get("crf"), dict):
        crf_known = {f.name for f in fields(CRFParams)}
        kw["crf"] = CRFParams(**{k: v for k, v in kw["crf"].items() if k in crf_known})
    return Settings(**kw)


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _first_line(e) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:200] if s else type(e).__name__
