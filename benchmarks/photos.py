#!/usr/bin/env python
"""Five of scikit-image's own photos as datasets with masks: images from outside the shared data.

None of them was used to choose anything in label_tools. The masks are made from the images
themselves (thresholds of smoothed pixels), so they are approximate and favour methods that follow
the same per-pixel cues; they serve to check that a default holds on images it was not chosen on.

  coins    303 x 384 grey: 0 background, 1 coins (watershed of the Sobel elevation from markers
           below 30 and above 150, holes filled, objects under 64 px removed)
  page     191 x 384 grey: 0 paper, 1 text (Sauvola threshold, window 25)
  retina   1411 x 1411 colour: 0 outside the eye, 1 fundus, 2 vessels (outside = the grey photo
           smoothed by 4 px below a tenth of its 99th percentile; vessels = Sato ridge filter on the
           green band, sigmas 2-4, dark ridges, above its Otsu threshold inside the eye)
  ihc      512 x 512 colour: 0 background, 1 haematoxylin nuclei, 2 DAB-stained tissue (Otsu
           thresholds of the colour-deconvolved H and DAB channels smoothed by 1.5 px; nuclei first)
  hubble   872 x 1000 colour: 0 sky, 1 sources (the grey image smoothed by 1 px above its median plus
           3 robust standard deviations, objects under 10 px removed)

  python benchmarks/photos.py DIR          # writes DIR/<name>/images/<name>.png and masks/<name>.png
  python benchmarks/uncertainty.py --data DIR --only coins,page,retina,ihc,hubble --max-images 1 --seeds 0,1,2
"""
import os
import sys

import numpy as np

NAMES = ["coins", "page", "retina", "ihc", "hubble"]


def _grey(a):
    from skimage.color import rgb2gray

    return rgb2gray(a) if a.ndim == 3 else a.astype(np.float64) / 255.0


def _drop_small(m, size):
    """``m`` without its 8-connected objects of fewer than ``size`` pixels (any scikit-image version)."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(m, structure=np.ones((3, 3), bool))
    keep = np.bincount(lab.ravel(), minlength=n + 1) >= size
    keep[0] = False
    return keep[lab]


def coins():
    from scipy import ndimage as ndi
    from skimage import data, filters, segmentation

    img = data.coins()
    # scikit-image's region-based segmentation of this photo: a watershed of the Sobel elevation from
    # sure background (< 30) and sure coin (> 150) markers; a global threshold takes the bright top band
    markers = np.zeros(img.shape, np.uint8)
    markers[img < 30] = 1
    markers[img > 150] = 2
    m = segmentation.watershed(filters.sobel(img), markers) == 2
    return img, _drop_small(ndi.binary_fill_holes(m), 64).astype(np.uint8)


def page():
    from skimage import data, filters

    img = data.page()
    return img, (img < filters.threshold_sauvola(img, window_size=25)).astype(np.uint8)


def retina():
    from skimage import data, filters

    img = data.retina()
    g = filters.gaussian(_grey(img), 4)
    eye = g > 0.1 * np.percentile(g, 99)
    ridge = filters.sato(img[..., 1].astype(np.float64) / 255.0, sigmas=[2, 3, 4], black_ridges=True)
    vessel = eye & (ridge > filters.threshold_otsu(ridge[eye]))
    mask = np.where(eye, 1, 0).astype(np.uint8)
    mask[vessel] = 2
    return img, mask


def ihc():
    from skimage import data, filters
    from skimage.color import rgb2hed

    img = data.immunohistochemistry()
    hed = rgb2hed(img)
    h = filters.gaussian(hed[..., 0], 1.5)
    d = filters.gaussian(hed[..., 2], 1.5)
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[d > filters.threshold_otsu(d)] = 2
    mask[h > filters.threshold_otsu(h)] = 1
    return img, mask


def hubble():
    from skimage import data, filters

    img = data.hubble_deep_field()
    g = filters.gaussian(_grey(img), 1)
    med = np.median(g)
    robust = 1.4826 * np.median(np.abs(g - med))
    m = _drop_small(g > med + 3 * robust, 10)
    return img, m.astype(np.uint8)


def write_photos(root):
    """Write the five photos and their masks under ``root`` (``<name>/images/<name>.png``,
    ``<name>/masks/<name>.png``, class ids 0..K-1); returns ``root``."""
    from PIL import Image

    for name in NAMES:
        img, mask = globals()[name]()
        for sub, a in (("images", img), ("masks", mask)):
            os.makedirs(os.path.join(root, name, sub), exist_ok=True)
            Image.fromarray(a).save(os.path.join(root, name, sub, name + ".png"))
        shares = np.bincount(mask.ravel()) / mask.size
        print(f"{name}: {img.shape[1]} x {img.shape[0]}, class shares " + " ".join(f"{v:.3f}" for v in shares))
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/photos.py DIR")
    write_photos(sys.argv[1])
