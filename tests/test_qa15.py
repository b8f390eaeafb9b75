"""qa15: microscopy and remote-sensing files as they arrive (found by a sweep of real file kinds).

Each test makes its small file with the library a user's tool would have used (Pillow, tifffile,
rasterio/GDAL) and reads it the way ``label-image`` does.
"""
import os

import numpy as np
import pytest

from label_tools.io import open_image


def _write_png(path, grey, *, depth, trns):
    """A grey PNG of ``depth`` bits (1, 2 or 4: Pillow writes 8) with a tRNS chunk, written chunk by chunk."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    h, w = grey.shape
    per = 8 // depth
    rows = []
    for r in grey:
        packed = np.zeros((w + per - 1) // per, np.uint8)
        for i, v in enumerate(r):
            packed[i // per] |= int(v) << (8 - depth * (i % per + 1))
        rows.append(b"\x00" + packed.tobytes())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0))
                + chunk(b"tRNS", trns) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def _two_regions(h=30, w=44, seed=0):
    """uint8 (h, w) grey: left half dark, right half bright, with noise; and its 0/1 mask."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    mask[:, w // 2:] = 1
    img = np.where(mask == 1, 180, 60) + rng.integers(-20, 20, (h, w))
    return img.astype(np.uint8), mask


@pytest.mark.parametrize("kind", ["palette", "grey", "rgb", "grey4bit"])
def test_png_trns_transparency_is_nodata(tmp_path, kind):
    """A PNG made transparent by a tRNS chunk (a palette with transparent entries, GIMP's indexed export; or
    one grey or RGB value keyed out) had its transparent pixels labelled as the key colour: only an alpha
    channel made pixels no-data."""
    from PIL import Image

    img, _ = _two_regions()
    transparent = np.zeros(img.shape, bool)
    transparent[:5, :] = True
    transparent[20:, 3] = True
    p = str(tmp_path / f"{kind}.png")
    if kind == "palette":
        idx = (img > 120).astype(np.uint8)
        idx[transparent] = 2
        im = Image.fromarray(idx, mode="P")
        im.putpalette([30, 60, 160, 200, 180, 90, 255, 0, 255] + [0] * 253 * 3)
        im.save(p, transparency=bytes([255, 255, 0]))
    elif kind == "grey":
        g = np.maximum(img, 1)
        g[transparent] = 0
        Image.fromarray(g).save(p, transparency=0)
    elif kind == "rgb":
        rgb = np.stack([img, img // 2, 255 - img], axis=-1)
        rgb[transparent] = (255, 0, 255)
        rgb[~transparent & (rgb == (255, 0, 255)).all(-1)] = (254, 0, 255)
        Image.fromarray(rgb).save(p, transparency=(255, 0, 255))
    else:  # a 4-bit grey PNG keyed on value 0 (libpng widens it to 8 bits)
        g = np.maximum(img // 17, 1).astype(np.uint8)
        g[transparent] = 0
        _write_png(p, g, depth=4, trns=b"\x00\x00")
    src = open_image(p)
    assert src.has_nodata
    np.testing.assert_array_equal(src.read_valid(), ~transparent)


def _pages_tiff(path, pages, description):
    """A multi-page 16-bit TIFF (one grey page per array of ``pages``) with ``description`` as its
    ImageDescription, as ImageJ and OME writers store stacks; written with Pillow."""
    from PIL import Image

    ims = [Image.fromarray(np.ascontiguousarray(p, np.uint16)) for p in pages]
    ims[0].save(path, format="TIFF", save_all=True, append_images=ims[1:], tiffinfo={270: description})


def _stack(c, z, t, h=30, w=44):
    """(t, z, c, h, w) uint16: channel 1 holds the two regions (plus 1000 per z-slice, 3000 per time point,
    so the plane read can be told), every other channel flat noise; and the regions' mask."""
    rng = np.random.default_rng(1)
    img, mask = _two_regions(h, w)
    a = np.zeros((t, z, c, h, w), np.uint16)
    for ti in range(t):
        for zi in range(z):
            for ci in range(c):
                a[ti, zi, ci] = (img.astype(np.uint16) * 10 + 1000 * zi + 3000 * ti if ci == 1
                                 else 500 + ci + rng.integers(0, 30, (h, w)))
    return a, mask


def test_imagej_hyperstack_channels_are_bands(tmp_path):
    """An ImageJ hyperstack (TZCYX, one channel per page) was read as its first page alone: a two-channel stack
    was labelled on channel 1 only, and the warning spoke of separate images to split with tiffsplit. Its channels
    (of z-slice 1 at time point 1) are now the bands, and the stack note says which plane is labelled."""
    a, _ = _stack(2, 3, 2)
    p = str(tmp_path / "hs.tif")
    _pages_tiff(p, a.reshape(-1, *a.shape[-2:]),
                "ImageJ=1.54f\nimages=12\nchannels=2\nslices=3\nframes=2\nhyperstack=true\nmode=composite\n")
    src = open_image(p)
    assert src.count == 2
    np.testing.assert_array_equal(src.ds.read(), a[0, 0])
    assert src.pages == 6  # planes: 3 z-slices x 2 time points
    from label_tools.io import stack_note

    note = stack_note(src)
    assert "ImageJ hyperstack of 2 channels, 3 z-slices, 2 time points" in note
    assert "z-slice 1 at time point 1 is labelled" in note


def test_ome_tiff_channels_are_bands_and_named(tmp_path, capsys):
    """An OME-TIFF of three channels stored a page each (DimensionOrder XYZCT: channel c of z-slice 1 is page
    c x SizeZ) was labelled on its first channel alone, which holds no contrast; now its channels are the bands,
    with their OME names, and the labels follow the channel that shows the regions."""
    from PIL import Image

    from label_tools.cli import main

    a, mask = _stack(3, 2, 1)
    order = a[0].transpose(1, 0, 2, 3)  # (c, z, h, w): XYZCT, z fastest
    xml = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
           '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="44" SizeY="30" '
           'SizeC="3" SizeZ="2" SizeT="1">'
           + "".join(f'<Channel ID="Channel:0:{i}" SamplesPerPixel="1" Name="{n}"/>' for i, n in
                     enumerate(["DAPI", "GFP", "RFP"]))
           + '<TiffData IFD="0" PlaneCount="6"/></Pixels></Image></OME>')
    p = str(tmp_path / "cells.ome.tif")
    _pages_tiff(p, order.reshape(-1, 30, 44), xml)
    src = open_image(p)
    assert src.count == 3 and src.band_names == ("DAPI", "GFP", "RFP")
    np.testing.assert_array_equal(src.ds.read(), a[0, 0])
    src.close()
    scr = np.zeros(mask.shape, np.uint8)
    scr[5:25, 3:15] = 1
    scr[5:25, 28:40] = 2
    Image.fromarray(scr).save(tmp_path / "s.png")
    out = tmp_path / "out"
    assert main([p, "--scribbles", str(tmp_path / "s.png"), "-o", str(out), "--headless", "-q"]) in (0, None)
    lab = np.array(Image.open(out / "cells_mres_label.png"))
    assert lab.shape == mask.shape
    assert (lab == mask).mean() > 0.95


def _vrt_over(tmp_path, data, nodatas):
    """A GeoTIFF of ``data`` (bands, h, w) float32 and a VRT over it whose band b declares ``nodatas[b]``
    (None: no no-data value), as a stack of products with different fill values is kept (or an .img)."""
    import rasterio
    from affine import Affine

    n, h, w = data.shape
    tif = str(tmp_path / "stack_src.tif")
    with rasterio.open(tif, "w", driver="GTiff", width=w, height=h, count=n, dtype="float32", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 5000000)) as ds:
        ds.write(data.astype(np.float32))
    bands = "".join(
        f'<VRTRasterBand dataType="Float32" band="{b + 1}">'
        + ("" if nd is None else f"<NoDataValue>{nd}</NoDataValue>")
        + f'<SimpleSource><SourceFilename relativeToVRT="1">stack_src.tif</SourceFilename><SourceBand>{b + 1}'
        '</SourceBand></SimpleSource></VRTRasterBand>' for b, nd in enumerate(nodatas))
    vrt = str(tmp_path / "stack.vrt")
    with open(vrt, "w") as f:
        f.write(f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>EPSG:32633</SRS>'
                f'<GeoTransform>500000,10,0,5000000,0,-10</GeoTransform>{bands}</VRTDataset>')
    return vrt


@pytest.mark.parametrize("nodatas", [(0, -1, -2), (None, -9999, None)])
def test_per_band_nodata_values_each_mask_their_band(tmp_path, nodatas):
    """Bands declaring different no-data values: GDAL's dataset mask keeps a pixel valid when any band is valid
    (and with no value on band 1, the others' were not looked at), so band 2's fill value -1 or -9999 was read as
    data, far outside its range. A pixel is now no-data where any band read holds its own no-data value."""
    img, _ = _two_regions()
    data = np.stack([img / 255 + 0.1, img / 10.0 + 10, img + 100.0])
    fill = np.zeros(img.shape, bool)
    fill[:4] = True  # band 2's fill rows
    data[1][fill] = nodatas[1]
    expect = ~fill
    if nodatas[0] is not None:
        data[0][-3:] = nodatas[0]
        data[2][:, :5] = nodatas[2]
        expect[-3:] = False
        expect[:, :5] = False
    src = open_image(_vrt_over(tmp_path, data, nodatas))
    assert src.has_nodata
    np.testing.assert_array_equal(src.read_valid(), expect)
    src.close()


def test_shared_nodata_value_keeps_a_pixel_valid_in_any_band(tmp_path):
    """One no-data value for every band (RGB with nodata 0): a pixel is no-data only where every band holds it,
    as GDAL's dataset mask has it (a pure red pixel is data)."""
    img, _ = _two_regions()
    data = np.stack([img + 1.0, img + 2.0, img + 3.0])
    data[:, :3] = 0  # the border: 0 in every band
    data[1:, 10, 10] = 0  # red: 0 in bands 2 and 3 only
    src = open_image(_vrt_over(tmp_path, data, (0, 0, 0)))
    expect = np.ones(img.shape, bool)
    expect[:3] = False
    np.testing.assert_array_equal(src.read_valid(), expect)
    src.close()


def _geotiff(path, data, **kw):
    """A small GeoTIFF of ``data`` (bands, h, w) on a UTM grid."""
    import rasterio
    from affine import Affine

    n, h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=n, dtype=data.dtype, crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 5000000), **kw) as ds:
        ds.write(data)
    return str(path)


@pytest.mark.parametrize("top,kind", [(65535, "tif"), (4095, "tif"), (65535, "png")])
def test_saturated_pixels_do_not_set_the_stretch(tmp_path, top, kind):
    """16-bit fluorescence of values 100..400 with 1 % saturated or hot pixels (at 65535, or 4095 from a 12-bit
    camera): over 0.5 % of pixels at the maximum made it the stretch's upper limit, so the cells were read as
    0..0.005 (a black display, features dominated by the hot pixels, 7 % of pixels mislabelled). The stretch now
    comes from the unsaturated pixels; the hot ones clip as outliers do."""
    import cv2

    img, mask = _two_regions(40, 60)
    a = (100 + img.astype(np.uint16) * 300 // 255).astype(np.uint16)
    hot = np.random.default_rng(3).random(a.shape) < 0.01
    assert 0.005 < hot.mean() < 0.05
    a[hot] = top
    p = str(tmp_path / f"cells.{kind}")
    if kind == "png":
        cv2.imwrite(p, a)
    else:
        _geotiff(p, a[None])
    src = open_image(p)
    x = src.read()[..., 0]
    dim, bright = np.median(x[(mask == 0) & ~hot]), np.median(x[(mask == 1) & ~hot])
    assert bright - dim > 0.5, (dim, bright)
    assert x[hot].min() == pytest.approx(1.5)
    rgb = src.read_display()
    assert np.median(rgb[(mask == 1) & ~hot]) > 150


def test_saturation_rule_leaves_a_few_level_image_alone(tmp_path):
    """Levels 0/1/2 with 2 on 3 % of pixels: 2 is the band's top but not far above the rest, so it still sets
    the stretch (the saturation rule only takes a top value well above the other pixels' range)."""
    a = np.zeros((40, 60), np.uint16)
    a[:, 30:] = 1
    a[:2, :36] = 2  # 72 px, 3 %
    src = open_image(_geotiff(tmp_path / "levels.tif", a[None]))
    x = src.read()[..., 0]
    assert x[0, 0] == pytest.approx(1.0) and x[5, 40] == pytest.approx(0.5) and x[5, 5] == 0


@pytest.mark.parametrize("how", ["geotiff", "geotiff64", "array"])
def test_undeclared_float_fill_is_nodata(tmp_path, how):
    """A DEM with float32's lowest value (-3.4028235e38, the fill many GIS tools write without declaring it) on
    2.5 % of pixels: it set the stretch's lower limit, so every elevation became exactly 1.0 in float32 (a flat
    image; 13 % mislabelled). Such pixels are now no-data, as NaN and +-inf are."""
    from label_tools.io import ArraySource

    img, mask = _two_regions(40, 60)
    dem = (100 + img / 255 * 20).astype(np.float32)
    fill = np.zeros(dem.shape, bool)
    fill[:, :2] = True
    dem[fill] = -3.4028235e38
    if how == "array":
        src = ArraySource(dem)
    else:
        d = dem.astype(np.float64) if how == "geotiff64" else dem
        if how == "geotiff64":
            d[fill] = -3.4028234663852886e38  # the same fill as GDAL prints it, in a float64 raster
        src = open_image(_geotiff(tmp_path / "dem.tif", d[None]))
    np.testing.assert_array_equal(src.read_valid(), ~fill)
    x = src.read()[..., 0]
    assert np.median(x[(mask == 1) & ~fill]) - np.median(x[(mask == 0) & ~fill]) > 0.5


@pytest.mark.parametrize("option", ["--scribbles", "--init"])
def test_north_up_strokes_on_a_north_down_raster_are_named_upside_down(tmp_path, capsys, option):
    """A north-down raster (pixel height > 0, as netCDF conversions give) with strokes rasterised north-up over
    the same ground (gdal_rasterize and QGIS write nothing else): refused as lying 'elsewhere than the image',
    which sent the user looking for another tile. The line now says it covers the image's ground upside down."""
    from affine import Affine

    from label_tools.cli import main

    img, mask = _two_regions()
    h, w = img.shape
    image = _geotiff(tmp_path / "nd.tif", img[None])
    import rasterio

    with rasterio.open(image, "r+") as ds:
        ds.transform = Affine(10, 0, 500000, 0, 10, 5000000)  # north-down: top row is the southern edge
    strokes = np.zeros((h, w), np.uint8)
    strokes[5:25, 3:15], strokes[5:25, 28:40] = 1, 2
    if option == "--init":
        strokes = mask.copy()
    up = str(tmp_path / "strokes_up.tif")
    with rasterio.open(up, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 5000000 + 10 * h)) as ds:
        ds.write(strokes[::-1][None])
    out = tmp_path / "out"
    args = [image, option, up, "-o", str(out), "--headless", "-q"]
    if option == "--init":
        Image = pytest.importorskip("PIL.Image")
        s = np.zeros((h, w), np.uint8)
        s[5:25, 3:15] = 1
        Image.fromarray(s).save(tmp_path / "s.png")
        args += ["--scribbles", str(tmp_path / "s.png")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and repr(up) in err[0]
    assert "covers the image's ground but upside down" in err[0] and "elsewhere" not in err[0]
    assert not out.exists() or not os.listdir(out)


def test_gis_rasters_of_other_formats_are_read_through_gdal(tmp_path):
    """An ESRI ASCII grid DEM (.asc) and an ENVI stack (.dat + .hdr), both read by GDAL and common in remote
    sensing, were refused as images Pillow 'cannot identify'. They are now read as rasters, georeferencing kept."""
    import rasterio
    from affine import Affine

    img, _ = _two_regions()
    t = Affine(10, 0, 500000, 0, -10, 5000000)
    asc = str(tmp_path / "dem.asc")
    with rasterio.open(asc, "w", driver="AAIGrid", width=44, height=30, count=1, dtype="float32",
                       crs="EPSG:32633", transform=t, nodata=-9999) as ds:
        ds.write(np.where(np.arange(44) < 2, -9999, 100 + img / 10).astype(np.float32)[None])
    dat = str(tmp_path / "stack.dat")
    with rasterio.open(dat, "w", driver="ENVI", width=44, height=30, count=5, dtype="uint16",
                       crs="EPSG:32633", transform=t) as ds:
        ds.write(np.stack([img.astype(np.uint16) * (b + 1) for b in range(5)]))
    dem = open_image(asc)
    assert dem.georef is not None and dem.georef.transform == t and dem.georef.crs.to_epsg() == 32633
    assert dem.read_valid()[:, :2].sum() == 0 and dem.read_valid()[:, 2:].all()
    stack = open_image(dat)
    assert stack.count == 5 and stack.georef.transform == t


def test_tiff_by_content_and_containers_of_rasters(tmp_path, capsys):
    """A TIFF named for its microscope (Zeiss .lsm, MetaMorph .stk) went to the photo reader, which read its first
    page without a word; it is now read as the TIFF it is (a hyperstack's channels as bands). A netCDF of two
    variables is refused in one line naming its subdatasets and the command that converts one."""
    from scipy.io import netcdf_file

    from label_tools.cli import main

    a, _ = _stack(2, 1, 1)
    p = str(tmp_path / "cells.lsm")
    _pages_tiff(p, a.reshape(-1, *a.shape[-2:]), "ImageJ=1.54f\nimages=2\nchannels=2\nhyperstack=true\n")
    src = open_image(p)
    assert src.count == 2 and src.pages == 1
    src.close()
    nc = str(tmp_path / "ocean.nc")
    f = netcdf_file(nc, "w")
    f.createDimension("y", 30)
    f.createDimension("x", 44)
    for name in ("sst", "chl"):
        f.createVariable(name, "f4", ("y", "x"))[:] = np.random.default_rng(0).random((30, 44))
    f.close()
    from PIL import Image

    Image.fromarray(np.eye(30, 44, dtype=np.uint8) * 2 + np.eye(30, 44, 5, dtype=np.uint8)).save(tmp_path / "s.png")
    out = tmp_path / "out"
    assert main([nc, "--scribbles", str(tmp_path / "s.png"), "-o", str(out), "--headless", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and repr(nc) in err[0] and "2 subdatasets" in err[0] and "gdal_translate" in err[0]
    assert "sst" in err[0]
    assert not out.exists() or not os.listdir(out)


def test_microscope_format_refusal_says_what_to_do(tmp_path, capsys):
    """A Zeiss .czi (which neither GDAL nor Pillow reads) was refused as 'cannot identify image file' alone; the
    line now says to save it as an OME-TIFF."""
    from label_tools.cli import main

    p = tmp_path / "cells.czi"
    p.write_bytes(b"ZISRAWFILE" + bytes(range(256)) * 8)
    assert main([str(p), "--scribbles", str(p), "-o", str(tmp_path / "o"), "--headless", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and repr(str(p)) in err[0] and "OME-TIFF" in err[0]


@pytest.mark.parametrize("kind", ["webp", "gif"])
def test_webp_alpha_and_gif_transparency_are_nodata(tmp_path, kind):
    """A lossless WebP with alpha (web map tiles) and a GIF with a transparent index had their transparent pixels
    labelled (as the colour hidden under them); only a PNG's alpha made no-data. Now they are no-data too."""
    from PIL import Image

    img, _ = _two_regions()
    transparent = np.zeros(img.shape, bool)
    transparent[:4] = True
    transparent[10:20, 40:] = True
    p = str(tmp_path / f"tile.{kind}")
    if kind == "webp":
        rgba = np.dstack([img, 255 - img, img // 2, np.where(transparent, 0, 255).astype(np.uint8)])
        Image.fromarray(rgba).save(p, lossless=True)
    else:
        idx = (img > 120).astype(np.uint8)
        idx[transparent] = 2
        im = Image.fromarray(idx, mode="P")
        im.putpalette([30, 60, 160, 200, 180, 90, 0, 0, 0] + [0] * 253 * 3)
        im.save(p, transparency=2)
    src = open_image(p)
    np.testing.assert_array_equal(src.read_valid(), ~transparent)
    assert src.count == 3


def test_imagej_lut_is_a_display_choice(tmp_path):
    """An 8-bit image Fiji saved with a 'Green' LUT stores the LUT as a TIFF colour table; it was read as the RGB of
    that table, so the red and blue bands were 0 everywhere and the run warned about two empty bands the user never
    had. The pixel values (the intensities) are now read, one band, as Fiji shows them."""
    from PIL import Image

    img, _ = _two_regions()
    im = Image.fromarray(img, mode="L").convert("P")
    im.putpalette([v for i in range(256) for v in (0, i, 0)])
    p = str(tmp_path / "gfp.tif")
    im.save(p, format="TIFF", tiffinfo={270: "ImageJ=1.54f\nmin=0.0\nmax=255.0\n"})
    src = open_image(p)
    assert src.count == 1 and not src.palette
    np.testing.assert_array_equal(src._read_raw((0, 30, 0, 44), None)[..., 0], img)
    assert src.constant_bands() == []


def test_fiji_label_mask_with_a_lut_gives_class_numbers_as_scribbles(tmp_path):
    """Strokes drawn in Fiji and saved as an 8-bit label mask (0 = none, k = class k) carry Fiji's display LUT as a
    colour table; --scribbles refused it as 'in colour: give the colours file'. Its values are the class numbers."""
    from PIL import Image

    from label_tools.scribbles import read_scribbles

    s = np.zeros((30, 44), np.uint8)
    s[5:25, 3:15], s[5:25, 28:40] = 1, 2
    im = Image.fromarray(s).convert("P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [128] * 253 * 3)
    p = str(tmp_path / "strokes.tif")
    im.save(p, format="TIFF", tiffinfo={270: "ImageJ=1.54f\nmin=0.0\nmax=2.0\n"})
    np.testing.assert_array_equal(read_scribbles(p, s.shape, n_classes=2), s)
