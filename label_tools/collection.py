"""Collections: label a folder of images one after another, the model carried from image to image.

``label-image -w 500 FOLDER/`` (or several images) walks the images in order. The first is labelled
as a single image is; from the second on, the annotation window opens with the current model's
labels shown as pre-labels (see :mod:`label_tools.annotate_prelabels`), the person strokes only where
they are wrong, and the model is refitted on the samples of every finished image plus the new
strokes (``Model.fit(..., base=previous)``). After each image its outputs are written and the model
is saved (``<outdir>/<name>_model.skops``, or ``--save-model``).

Where the walk is lives in ``<outdir>/<name>_collection.json`` (the images, the one being labelled,
those finished, the model file), and where the person is inside an image lives in that image's
``<stem>_scribbles.json``, so a killed session started again with the same command resumes at the
same image and window. The model is then read back from its file, or, where it cannot be (no file
yet, or one from another walk), refitted from the finished images' saved scribbles.

This module opens no window: the per-image step (annotate -> fit -> write) is passed in.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from .errors import InputError

log = logging.getLogger("label_tools")

MODEL_EXT = "skops"
STATE_SUFFIX = "_collection.json"

# ---------------------------------------------------------------------------- inputs
def list_images(inputs) -> list:
    """Absolute paths of the images named and of those inside folders named (each folder sorted by name).

    Raises
    ------
    InputError
        An input that does not exist, a folder with no image, or two images with the same stem
        (their outputs would collide).
    """
    from .io import stem
    from .job import collect_inputs

    out = [os.path.abspath(p) for p in collect_inputs(inputs)]
    seen = {}
    for p in out:
        s = stem(p)
        if s in seen and seen[s] != p:
            raise InputError(f"images {seen[s]!r} and {p!r} have the same name {s!r}: their outputs would collide; "
                             "rename one or label them in separate runs")
        seen[s] = p
    return list(dict.fromkeys(out))


def collection_name(inputs) -> str:
    """Name of a collection: the folder's name (of the first input's folder for a list of images)."""
    first = os.path.abspath(inputs[0])
    folder = first if os.path.isdir(first) else os.path.dirname(first)
    return os.path.basename(folder.rstrip(os.sep)) or "collection"


def default_model_path(outdir: str, name: str) -> str:
    return os.path.join(outdir, f"{name}_model.{MODEL_EXT}")


# ---------------------------------------------------------------------------- the walk's state
@dataclass
class CollectionState:
    """Where a collection walk is, saved atomically after every step.

    Attributes
    ----------
    path : str
        The JSON file (``<outdir>/<name>_collection.json``).
    images : list of str
        Absolute paths, in walking order.
    index : int
        The image being labelled (``len(images)`` when all are done).
    done : list of str
        Images whose outputs were written, in the order they were finished.
    model : str
        Where the model is saved after each image.
    start_model : str or None
        ``--model`` the walk started from.
    """

    path: str
    images: list
    index: int = 0
    done: list = field(default_factory=list)
    model: str = ""
    start_model: str | None = None

    @classmethod
    def load(cls, path: str) -> "CollectionState | None":
        """The state saved at ``path``, or None when there is none (or it cannot be read)."""
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
            return cls(path, list(d["images"]), int(d.get("index", 0)), list(d.get("done", [])),
                       str(d.get("model", "")), d.get("start_model"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self):
        from .files import atomic_path

        d = {"images": self.images, "index": self.index, "done": self.done, "model": self.model,
             "start_model": self.start_model, "current": self.images[self.index] if self.index < len(self.images)
             else None}
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(d, f, indent=1)


# ---------------------------------------------------------------------------- models
def load_model(path: str):
    """A model saved by ``Model.save`` (InputError naming the file if it cannot be read)."""
    from .job import load_model_cached

    return load_model_cached(path)


def walked_model(outdir: str, name: str, images):
    """The model of an earlier walk over some of ``images`` into ``outdir`` (resumed by running the same
    command again), or None: no such walk, no image of it finished yet, or a model file that cannot be read.
    Its classes are the walk's, so a resumed walk needs no labels or colours file."""
    old = CollectionState.load(os.path.join(outdir, f"{name}{STATE_SUFFIX}"))
    if old is None or not old.done or not set(old.images) & set(images) or not os.path.isfile(old.model):
        return None
    try:
        return load_model(old.model)
    except InputError:
        return None


def refit(images, outdir: str, *, classes, settings, base=None, open_image, progress=None):
    """The model a walk had after ``images``: refitted from their saved scribbles, in order."""
    from .job import stem_in
    from .model import Model
    from .scribbles import read_scribbles
    from .session import scribble_paths

    model = base
    for p in images:
        png = scribble_paths(outdir, stem_in(outdir, p))[0]
        if not os.path.exists(png):
            continue  # finished without strokes: nothing to learn from it
        src = open_image(p)
        scr = read_scribbles(png, src.shape, n_classes=len(classes))
        if not scr.any():
            continue
        log.info("refitting the collection's model on %s", os.path.basename(p))
        model = Model.fit(src, scr, classes=classes, settings=settings, base=model, progress=progress)
        model._cache = None
    return model


# ---------------------------------------------------------------------------- the walk
def walk(images, *, outdir: str, name: str, step, open_image, classes, settings, model_path: str | None = None,
         start_model: str | None = None, resume=None, outputs_of, overwrite: bool = False,
         progress=None, labels_given: bool = False) -> CollectionState:
    """Label ``images`` one after another, carrying the model over; resumable.

    Parameters
    ----------
    images : list of str
        Absolute image paths, in order.
    outdir : str
    name : str
        Collection name (state file ``<outdir>/<name>_collection.json``).
    step : callable(src, index, *, base, prelabels, resume, title_note, model_path) -> Model
        Labels one image: annotate (with ``prelabels`` (uint8 (H, W), 0-based, 255 = none) shown, or
        None), fit on top of ``base``, write the outputs, save the model to ``model_path``; returns
        the fitted model.
    open_image : callable(path) -> ImageSource
    classes : Classes
        The collection's classes (those of ``start_model`` when one is given).
    settings : pipeline.Settings
    model_path : str, optional
        Where the model is saved after each image (default ``<outdir>/<name>_model.skops``).
    start_model : str, optional
        A model file to start from (``--model``).
    resume : bool or None
        For an image with saved scribbles outside a resumed walk: True resume, False start afresh,
        None ask. The image a killed walk stopped at always resumes unless ``resume`` is False.
    outputs_of : callable(path) -> list of str
        The output files every labelled image has (an image is finished when they all exist).
    overwrite : bool
        Label again images whose outputs exist though the walk has not finished them; without it
        such an image stops the walk before any window opens (OutputError naming the file).
    labels_given : bool
        ``classes`` come from a labels file (``--labels``): a resumed walk whose model has other
        classes stops before any window opens (InputError naming the model file and both lists).

    Returns
    -------
    CollectionState
    """
    state_path = os.path.join(outdir, f"{name}{STATE_SUFFIX}")
    model_path = os.path.abspath(model_path or default_model_path(outdir, name))
    old = CollectionState.load(state_path)
    state = CollectionState(state_path, list(images), 0, [], model_path,
                            os.path.abspath(start_model) if start_model else None)
    restarted = old is not None and old.index < len(old.images) and set(old.images) & set(images)
    if not overwrite:
        _check_not_another_walk(old, images, state_path, model_path, start_model)
    if old is not None:
        state.done = [p for p in old.done if p in images and all(os.path.exists(q) for q in outputs_of(p))]
    if not overwrite:
        from .files import check_not_existing

        for p in images:
            if p not in state.done:
                check_not_existing(outputs_of(p), overwrite=False, image=p)
    base = load_model(start_model) if start_model else None
    if state.done:
        base = _model_after(state, old, base, classes=classes, settings=settings, open_image=open_image,
                            outdir=outdir, progress=progress)
        if labels_given and base is not None and tuple(base.classes.names) != tuple(classes.names):
            raise InputError(  # the model's classes would be used without a word, a new class never drawn
                f"the collection's model {state.model!r} has the classes {', '.join(base.classes.names)} "
                f"({len(base.classes)}) but --labels gives {', '.join(classes.names)} ({len(classes)}); give the "
                "labels file the walk began with, in the same order (a walk with other classes needs another -o "
                "folder)")
    n = len(images)
    for i, path in enumerate(images):
        if path in state.done:
            log.info("image %d/%d %s: done earlier, skipped", i + 1, n, os.path.basename(path))
            continue
        state.index = i
        state.save()
        src = open_image(path)
        prelabels = None
        if base is not None:
            base.check_source(src)
            log.info("image %d/%d %s: pre-labelling with the model", i + 1, n, os.path.basename(path))
            prelabels = base.predict(src, progress=progress).labels
        here = True if (restarted and old.index < len(old.images) and old.images[old.index] == path
                        and resume is not False) else resume
        model = step(src, i, base=base, prelabels=prelabels, resume=here, title_note=f"image {i + 1}/{n}",
                     model_path=model_path)
        model._cache = None  # features of this image are not needed for the next
        state.done.append(path)
        state.index = i + 1
        state.save()
        base = model
        close = getattr(src, "close", None)
        if close:
            close()
    state.index = n
    state.save()
    return state


def _check_not_another_walk(old, images, state_path, model_path, start_model):
    """Refuse (before any window opens) to replace another collection's state or model: two folders of the same
    name (``A/survey``, ``B/survey``) walked into one -o share ``survey_collection.json`` and
    ``survey_model.skops``, and the second walk replaced the first's model without a word. This walk's own
    (an earlier run over some of these images) and the ``--model`` it refits are not another's."""
    from .errors import OutputError

    other = old is not None and not set(old.images) & set(images)
    if other:
        raise OutputError(
            f"{state_path!r} is the state of another collection of the same name ({len(old.images)} other "
            f"image{'' if len(old.images) == 1 else 's'}, "
            f"from {os.path.dirname(old.images[0]) if old.images else '?'!r}), whose model this walk would replace: "
            "give another -o folder, or pass --overwrite to start a new walk there")
    if not os.path.exists(model_path):
        return
    mine = old is not None and os.path.abspath(old.model) == model_path
    refits = start_model is not None and os.path.realpath(start_model) == os.path.realpath(model_path)
    if not (mine or refits):
        raise OutputError(f"collection model {model_path!r} already exists and is not this walk's: pass --overwrite "
                          "to replace it, or give another path with --save-model (or another -o folder)")


def _model_after(state, old, start, *, classes, settings, open_image, outdir, progress):
    """The model as it was after ``state.done``: from the model file if it holds exactly those, else refitted."""
    p = state.model
    if os.path.exists(p):
        try:
            m = load_model(p)
            if list(m.info.get("images", [])) [-len(state.done):] == state.done or (
                    old is not None and old.done == state.done and old.model == p):
                log.info("collection model read from %s", p)
                return m
        except InputError as e:
            log.info("collection model %s not used (%s): refitting from the scribbles", p, e)
    return refit(state.done, outdir, classes=classes, settings=settings, base=start, open_image=open_image,
                 progress=progress)
