import warnings
"Tests of the data pipeline (ijepa_edu.data) on tiny generated images; the lesson's own tests live in nbs/08_data.ipynb."
import os, tarfile, threading

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader
from torchvision import transforms as T
import fastcore.test as fct

import ijepa_edu.data as data
from ijepa_edu.data import (IMAGENET_MEAN, IMAGENET_STD, make_transforms, unpack_archive, resolve_data, make_dataset,
                            ResumableSampler, SeededSamples, MaskedBatchCollate)
from ijepa_edu.masks import MaskCollator

torch.set_num_threads(1)


def _image(i, size=40):
    "A small, distinct RGB image: a colour, a disc and a bar that move with i."
    g = np.random.default_rng(i)
    img = Image.new('RGB', (size, size), tuple(int(v) for v in g.integers(0, 255, 3)))
    d = ImageDraw.Draw(img)
    a = int(g.integers(0, size // 2))
    d.ellipse((a, a // 2, a + size // 2, a // 2 + size // 2), fill=tuple(int(v) for v in g.integers(0, 255, 3)))
    d.rectangle((size - a - 5, 0, size - a, size), fill=tuple(int(v) for v in g.integers(0, 255, 3)))
    return img


def write_tree(root, n_train=12, n_val=4, size=40):
    "root/{train,val}/{a,b}/*: RGB JPEG, greyscale PNG and RGBA PNG in turn."
    for split, n in (('train', n_train), ('val', n_val)):
        for i in range(n):
            folder = root / split / 'ab'[i % 2]; folder.mkdir(parents=True, exist_ok=True)
            img = _image(i + (0 if split == 'train' else 100), size)
            if i % 3 == 0: img.save(folder / f'{i:03d}.jpg', quality=90)
            elif i % 3 == 1: img.convert('L').save(folder / f'{i:03d}.png')
            else: img.convert('RGBA').save(folder / f'{i:03d}.png')
    return root


def write_archive(path, tree, arcname='toy'):
    mode = 'w:gz' if path.name.endswith(('.tar.gz', '.tgz')) else 'w'
    with tarfile.open(path, mode) as tf: tf.add(tree, arcname=arcname)
    return path


@pytest.fixture
def tree(tmp_path): return write_tree(tmp_path / 'toy')


@pytest.fixture
def archive(tmp_path, tree): return write_archive(tmp_path / 'toy.tar.gz', tree)


@pytest.fixture
def count_opens(monkeypatch):
    "Count calls to tarfile.open made by ijepa_edu.data (each is one extraction)."
    calls, lock, real = [], threading.Lock(), tarfile.open
    def counting(*a, **k):
        if str(a[1] if len(a) > 1 else k.get('mode', 'r')).startswith('r'):   # reads only, not write_archive
            with lock: calls.append(a[0])
        return real(*a, **k)
    monkeypatch.setattr(data.tarfile, 'open', counting)
    return calls


def files_under(folder): return sorted(p.relative_to(folder).as_posix() for p in folder.rglob('*'))


# ---------------------------------------------------------------- archives

def test_archive_unpacked_once(tmp_path, archive, tree, count_opens):
    cache = tmp_path / 'cache'
    first = resolve_data(archive, cache)
    mtime = first.stat().st_mtime_ns
    again = resolve_data(archive, cache)
    assert first == again == first.parent / 'toy'                  # the archive's single top folder
    assert len(count_opens) == 1                                   # extracted once
    assert first.stat().st_mtime_ns == mtime
    assert files_under(first) == files_under(tree)
    assert not [p for p in cache.iterdir() if '.tmp' in p.name]    # no temporary folder left


def test_changed_archive_unpacked_anew(tmp_path, archive, tree, count_opens):
    cache = tmp_path / 'cache'
    first = unpack_archive(archive, cache)
    (tree / 'train' / 'a' / 'new.png').parent.mkdir(exist_ok=True)
    _image(99).save(tree / 'train' / 'a' / 'new.png')
    write_archive(archive, tree)
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))
    second = unpack_archive(archive, cache)
    assert second != first and len(count_opens) == 2
    assert (second / 'toy' / 'train' / 'a' / 'new.png').exists()


@pytest.mark.parametrize('name', ['toy.tgz', 'toy.tar'])
def test_other_archive_kinds(tmp_path, tree, name):
    root = resolve_data(write_archive(tmp_path / name, tree), tmp_path / 'cache')
    assert len(make_dataset(root)) == 12


def test_archive_without_top_folder(tmp_path, tree):
    "A tar of the tree's contents (train/, val/ at the top) resolves to the unpacked folder itself."
    root = resolve_data(write_archive(tmp_path / 'flat.tar.gz', tree, arcname='.'), tmp_path / 'cache')
    assert (root / 'train').is_dir() and len(make_dataset(root, 'val')) == 4


def test_precreated_destination_is_reused(tmp_path, archive, count_opens):
    "A second unpacker that finds the folder (another process finished first) uses it without extracting."
    name = unpack_archive(archive, tmp_path / 'c1').name
    dest = tmp_path / 'c2' / name
    (dest / 'theirs').mkdir(parents=True)
    assert unpack_archive(archive, tmp_path / 'c2') == dest
    assert len(count_opens) == 1 and files_under(dest) == ['theirs']


def test_rename_race_keeps_the_winner(tmp_path, archive, monkeypatch):
    "Another process renames its copy into place while we extract (no lock): ours is dropped, theirs kept."
    cache = tmp_path / 'cache'
    name = unpack_archive(archive, tmp_path / 'probe').name
    real = tarfile.TarFile.extractall
    def extract_then_lose(self, path, *a, **k):
        real(self, path, *a, **k)
        (cache / name / 'winner').mkdir(parents=True)               # the other process's rename lands first
    monkeypatch.setattr(tarfile.TarFile, 'extractall', extract_then_lose)
    dest = unpack_archive(archive, cache)
    assert dest == cache / name and files_under(dest) == ['winner']
    assert sorted(p.name for p in cache.iterdir()) == [name, name + '.lock']  # our temporary copy is gone


def test_concurrent_unpackers(tmp_path, archive, tree, count_opens):
    "Four unpackers at once: one extraction, every caller gets the same complete folder."
    cache, out, errors = tmp_path / 'cache', [], []
    def go():
        try: out.append(resolve_data(archive, cache))
        except Exception as e: errors.append(e)
    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join(60)
    assert not errors and len(out) == 4 and len(set(out)) == 1
    assert len(count_opens) == 1
    assert files_under(out[0]) == files_under(tree)


def test_interrupted_unpack_leaves_nothing(tmp_path, archive, monkeypatch):
    cache = tmp_path / 'cache'
    real = tarfile.TarFile.extractall
    def killed(self, path, *a, **k):
        next(iter(self)); self.extract(self.getmembers()[3], path)   # part of the tree, then Ctrl-C
        raise KeyboardInterrupt
    monkeypatch.setattr(tarfile.TarFile, 'extractall', killed)
    with pytest.raises(KeyboardInterrupt): unpack_archive(archive, cache)
    assert [p.suffix for p in cache.iterdir()] == ['.lock']         # neither a destination nor a temporary folder
    monkeypatch.setattr(tarfile.TarFile, 'extractall', real)
    assert len(make_dataset(resolve_data(archive, cache))) == 12


@pytest.mark.parametrize('name', ['toy.tar.gz', 'toy.tar'])
def test_truncated_archive_is_named_and_leaves_nothing(tmp_path, tree, name):
    """An archive cut short (an interrupted download or copy) must end in one message that says it is damaged and names
    it, with nothing half-unpacked left in the cache; without the check the user gets an EOFError traceback."""
    whole = write_archive(tmp_path / name, tree).read_bytes()
    for cut in (100, len(whole) // 2):
        bad = tmp_path / f'cut{cut}_{name}'; bad.write_bytes(whole[:cut] if name.endswith('gz') else whole[:cut + 2048])
        with pytest.raises(ValueError, match=rf"The archive {bad} is damaged \(.*\): it ends early or is corrupt.*"
                                             r"nothing of it was kept in the cache"):
            resolve_data(bad, tmp_path / 'cache')
    assert {p.suffix for p in (tmp_path / 'cache').iterdir()} == {'.lock'}   # no destination, no temporary folder


def test_environment_variables(tmp_path, archive, monkeypatch):
    monkeypatch.setenv('IJEPA_DATA', str(archive))
    monkeypatch.setenv('IJEPA_CACHE', str(tmp_path / 'envcache'))
    root = resolve_data()
    assert root.parent.parent == tmp_path / 'envcache' and len(make_dataset(root)) == 12


# ---------------------------------------------------------------- errors

def test_resolve_errors(tmp_path, monkeypatch):
    monkeypatch.delenv('IJEPA_DATA', raising=False)
    fct.test_fail(lambda: resolve_data(), contains='pass --data PATH')
    fct.test_fail(lambda: resolve_data(tmp_path / 'missing'), contains='does not exist: check --data')
    (tmp_path / 'a.zip').write_bytes(b'PK\x03\x04')
    fct.test_fail(lambda: resolve_data(tmp_path / 'a.zip'), contains='is not a .tar.gz, .tgz or .tar archive')
    (tmp_path / 'fake.tar.gz').write_text('hello')
    fct.test_fail(lambda: resolve_data(tmp_path / 'fake.tar.gz', tmp_path / 'c'), contains='is not a readable tar archive')
    assert [p.suffix for p in (tmp_path / 'c').iterdir()] == ['.lock']


def test_dataset_errors(tmp_path, tree):
    e = tmp_path / 'noimg'; (e / 'train' / 'a').mkdir(parents=True); (e / 'train' / 'a' / 'x.txt').write_text('x')
    fct.test_fail(lambda: make_dataset(e), contains='holds no images')
    flat = tmp_path / 'flat'; (flat / 'a').mkdir(parents=True); _image(0).save(flat / 'a' / '0.png')
    fct.test_fail(lambda: make_dataset(flat), contains=f'move them into {flat}/train')
    loose = tmp_path / 'loose'; (loose / 'train').mkdir(parents=True); _image(0).save(loose / 'train' / '0.png')
    fct.test_fail(lambda: make_dataset(loose), contains='no class folders')
    (tmp_path / 'trainonly' / 'train').mkdir(parents=True)
    fct.test_fail(lambda: make_dataset(tmp_path / 'trainonly', 'val'), contains="No 'val' folder")
    fct.test_fail(lambda: make_dataset(tree, 'holdout'), contains="No 'holdout' folder")
    fct.test_fail(lambda: make_dataset(tmp_path / 'missing'), contains='does not exist')
    fct.test_fail(lambda: make_dataset(tree, dataset='imagenet'), contains="'auto', 'imagefolder' or 'cifar10'")


def test_cifar10_paths_offline(tmp_path):
    "'auto' picks torchvision's CIFAR-10 for an empty folder or its layout; offline it fails naming the fix."
    empty = tmp_path / 'empty'; empty.mkdir()
    fct.test_fail(lambda: make_dataset(empty, download=False), contains='Without internet')
    (tmp_path / 'tv' / 'cifar-10-batches-py').mkdir(parents=True)
    fct.test_fail(lambda: make_dataset(tmp_path / 'tv', download=False), contains='CIFAR-10')
    fct.test_fail(lambda: make_dataset(empty, 'holdout', dataset='cifar10', download=False), contains="'train', 'val' or 'test'")


# ---------------------------------------------------------------- images and transforms

def test_val_and_test_answer_each_other(tree):
    assert len(make_dataset(tree, 'test')) == len(make_dataset(tree, 'val')) == 4


def test_greyscale_and_rgba_become_rgb(tree):
    ds = make_dataset(tree)
    modes = {Image.open(p).mode for p, _ in ds.samples}
    assert modes == {'RGB', 'L', 'RGBA'}
    for i, (p, _) in enumerate(ds.samples):
        img, on_disk = ds[i][0], Image.open(p)
        assert img.mode == 'RGB' and img.size == (40, 40)
        a = np.asarray(img)
        if on_disk.mode == 'L':
            assert (a == np.asarray(on_disk)[..., None]).all()          # grey copied into all three channels
        if on_disk.mode == 'RGBA':
            assert (a == np.asarray(on_disk)[..., :3]).all()            # alpha dropped, colours kept
    x = make_dataset(tree, transform=make_transforms(32))[1][0]
    assert x.shape == (3, 32, 32)


def test_default_transforms_are_the_official_ones():
    t = make_transforms(64)
    assert [type(s).__name__ for s in t.transforms] == ['RandomResizedCrop', 'ToTensor', 'Normalize']
    rrc = t.transforms[0]
    assert rrc.scale == (0.3, 1.0) and rrc.size == (64, 64)
    assert rrc.ratio == pytest.approx((3 / 4, 4 / 3))
    assert tuple(t.transforms[2].mean) == IMAGENET_MEAN and tuple(t.transforms[2].std) == IMAGENET_STD


def test_transform_options_and_errors():
    names = lambda t: [type(s).__name__ for s in t.transforms]
    assert 'RandomHorizontalFlip' in names(make_transforms(32, horizontal_flip=True))
    assert names(make_transforms(32, color_jitter=1.0))[1:3] == ['RandomApply', 'RandomGrayscale']
    assert names(make_transforms(32, train=False)) == ['Resize', 'CenterCrop', 'ToTensor', 'Normalize']
    fct.test_fail(lambda: make_transforms(32, crop_scale=(0.9, 0.3)), contains='reversed')
    fct.test_fail(lambda: make_transforms(32, crop_scale=(0.3, 1.5)), contains='crop_scale')
    fct.test_fail(lambda: make_transforms(-1), contains='positive integer')
    fct.test_fail(lambda: make_transforms(32, interpolation='box'), contains='interpolation must be')


@pytest.mark.parametrize('size', [(8, 8), (20, 12), (5, 40)])
def test_images_smaller_than_the_crop(size):
    img = _image(3).resize(size)
    for t in (make_transforms(32), make_transforms(32, train=False)):
        x = t(img)
        assert x.shape == (3, 32, 32) and torch.isfinite(x).all()


def test_crop_box_in_range():
    "Over many seeds, every crop covers 30-100% of the area (up to rounding) with aspect in [3/4, 4/3]."
    img = _image(0, size=200)
    for seed in range(300):
        torch.manual_seed(seed)
        i, j, h, w = T.RandomResizedCrop.get_params(img, [0.3, 1.0], [3 / 4, 4 / 3])
        assert 0.3 * 200 * 200 * 0.97 <= h * w <= 200 * 200
        assert 0.75 * 0.97 <= w / h <= 4 / 3 * 1.03


def test_normalisation_is_imagenet():
    img = Image.new('RGB', (32, 32), (124, 116, 104))   # about the ImageNet mean colour
    x = make_transforms(32, train=False)(img)
    expected = (torch.tensor([124, 116, 104]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(x.mean((1, 2)), expected.float(), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- sampler

@pytest.mark.parametrize('n,batch,world', [(26, 4, 2), (30, 3, 3), (17, 5, 1), (64, 8, 4)])
def test_rank_shards_disjoint_and_complete(n, batch, world):
    shards = [list(ResumableSampler(n, batch_size=batch, seed=7, rank=r, world_size=world)) for r in range(world)]
    single = list(ResumableSampler(n, batch_size=batch * world, seed=7))
    nb = n // (batch * world)
    for r in range(world): assert len(shards[r]) == nb * batch
    idx = [i for s in shards for i, _ in s]
    assert len(idx) == len(set(idx)) == nb * batch * world              # disjoint, nothing repeated
    for b in range(nb):                                                 # each global batch is covered, in order
        glob = [p for r in range(world) for p in shards[r][b * batch:(b + 1) * batch]]
        assert glob == single[b * batch * world:(b + 1) * batch * world]


def test_resume_is_the_tail():
    s = ResumableSampler(50, batch_size=4, seed=3, rank=1, world_size=2)
    for epoch in (0, 5):
        s.set_epoch(epoch); full = list(s)
        for k in range(s.batches_per_epoch + 1):
            s.set_epoch(epoch, k)
            assert list(s) == full[k * 4:] and len(s) == len(full) - k * 4


def test_sample_seeds_distinct_and_orders_change():
    s = ResumableSampler(40, batch_size=4, seed=0)
    seen, orders = [], []
    for epoch in range(5):
        s.set_epoch(epoch); items = list(s)
        seen += [sd for _, sd in items]; orders.append([i for i, _ in items])
        assert sorted(i for i, _ in items) == list(range(40))         # a permutation of the dataset
    assert len(set(seen)) == len(seen)                                 # every (epoch, position) has its own seed
    assert len({tuple(o) for o in orders}) == 5
    other = ResumableSampler(40, batch_size=4, seed=1)
    assert [i for i, _ in other] != orders[0]                          # another run seed, another order
    assert list(ResumableSampler(40, batch_size=4, seed=0)) == list(ResumableSampler(40, batch_size=4, seed=0))


def test_sampler_rejects_bad_settings():
    fct.test_fail(lambda: ResumableSampler(7, batch_size=4, world_size=2), contains='fewer than one global batch')
    fct.test_fail(lambda: ResumableSampler(3, batch_size=4), contains='fewer than one global batch')
    ResumableSampler(8, batch_size=4, world_size=2)                    # exactly one global batch is enough
    fct.test_fail(lambda: ResumableSampler(8, batch_size=0), contains='batch_size must be')
    fct.test_fail(lambda: ResumableSampler(8, batch_size=2, world_size=0), contains='world_size must be')
    fct.test_fail(lambda: ResumableSampler(8, batch_size=2, rank=2, world_size=2), contains='rank must be')
    s = ResumableSampler(8, batch_size=2)
    fct.test_fail(lambda: s.set_epoch(0, 5), contains='resume with the dataset')
    fct.test_fail(lambda: s.set_epoch(0, -1), contains='resume with the dataset')


# ---------------------------------------------------------------- seeded samples, collate, loader

def test_seeded_samples(tree):
    sds = SeededSamples(make_dataset(tree, transform=make_transforms(24)))
    (x, y), seed = sds[(2, 11)]
    torch.rand(100)
    assert seed == 11 and torch.equal(sds[(2, 11)][0][0], x)
    assert not torch.equal(sds[(2, 12)][0][0], x)
    state = torch.get_rng_state(); sds[(5, 3)]
    assert torch.equal(torch.get_rng_state(), state)                   # the global stream is put back


def test_collate_masks_depend_on_the_batch_seed():
    coll = MaskedBatchCollate(MaskCollator(input_size=32, patch_size=4, min_keep=4))
    items = lambda seeds: [((torch.zeros(3, 32, 32), 0), s) for s in seeds]
    (b1, e1, p1), (_, e2, p2) = coll(items([5, 6, 7])), coll(items([5, 6, 7]))
    assert all(torch.equal(m, n) for m, n in zip(e1 + p1, e2 + p2))
    assert b1[0].shape == (3, 3, 32, 32)
    _, e3, p3 = coll(items([8, 6, 7]))
    assert not all(m.shape == n.shape and torch.equal(m, n) for m, n in zip(e1 + p1, e3 + p3))


def _loader(root, num_workers, start_batch=0, batch_size=4, official=False, rank=0, world_size=1, skip_bad=True):
    ds = make_dataset(root, transform=make_transforms(32))
    sampler = ResumableSampler(len(ds), batch_size=batch_size, seed=1, rank=rank, world_size=world_size)
    sampler.set_epoch(0, start_batch)
    coll = MaskCollator(input_size=32, patch_size=4, min_keep=4, official=official)
    return list(DataLoader(SeededSamples(ds, skip_bad=skip_bad), batch_size=batch_size, sampler=sampler, collate_fn=MaskedBatchCollate(coll),
                           num_workers=num_workers, timeout=60 if num_workers else 0))


def _assert_same(a, b):
    assert len(a) == len(b)
    for ((x, y), enc, pred), ((x2, y2), enc2, pred2) in zip(a, b):
        assert torch.equal(x, x2) and torch.equal(y, y2)
        assert len(enc + pred) == len(enc2 + pred2) and all(torch.equal(m, n) for m, n in zip(enc + pred, enc2 + pred2))


@pytest.mark.parametrize('official', [False, True])
def test_same_batches_whatever_the_workers(tree, official):
    torch.manual_seed(0); a = _loader(tree, 0, official=official)
    torch.manual_seed(123); b = _loader(tree, 2, official=official)   # another global seed changes nothing
    _assert_same(a, b)
    assert len(a) == 3 and not torch.equal(a[0][0][0], a[1][0][0])


def test_resumed_loader_is_the_tail(tree):
    full = _loader(tree, 0)
    for k in (1, 2):
        _assert_same(_loader(tree, 0, start_batch=k), full[k:])


def test_two_ranks_read_what_one_process_reads_with_accumulation(tree):
    "Rank r's micro-batch b is micro-batch 2b + r of one process: same images, crops and masks."
    one = _loader(tree, 0, batch_size=2)                                # 6 micro-batches of 2
    ranks = [_loader(tree, 0, batch_size=2, rank=r, world_size=2) for r in range(2)]
    _assert_same([ranks[b % 2][b // 2] for b in range(6)], one)


def test_bad_file_raises_instead_of_hanging_when_not_skipping(tree):
    (tree / 'train' / 'a' / 'zz_bad.jpg').write_bytes(b'\xff\xd8\xff garbage')
    with pytest.raises(Exception, match='zz_bad.jpg'):
        _loader(tree, 2, batch_size=1, skip_bad=False)

@pytest.mark.parametrize('workers', [0, 2])
def test_bad_file_is_skipped_named_and_counted(tree, workers):
    "Without the skip, the loader raises (the test above); with it, every position yields an image, one warning names the file."
    (tree / 'train' / 'a' / 'zz_bad.jpg').write_bytes(b'\xff\xd8\xff garbage')
    (tree / 'train' / 'a' / 'zz_text.jpg').write_text('not an image at all')
    ds = make_dataset(tree, transform=make_transforms(32))
    samples = SeededSamples(ds)
    dl = DataLoader(samples, batch_size=1, sampler=ResumableSampler(len(ds), batch_size=1),
                    collate_fn=MaskedBatchCollate(MaskCollator(input_size=32, patch_size=4, min_keep=4)),
                    num_workers=workers, timeout=60 if workers else 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        batches = list(dl)
    assert len(batches) == len(ds)
    # counted across workers, once per failed read: zz_bad's position meets zz_bad then zz_text (its stand-in), and
    # zz_text's own position meets zz_text: 3 reads failed for 2 files
    assert samples.bad.value == 3
    if workers == 0:                                                # worker warnings go to the workers' stderr
        msgs = ' '.join(str(w.message) for w in caught)
        assert 'zz_bad.jpg' in msgs and 'zz_text.jpg' in msgs

def test_all_bad_gives_up_with_a_clear_error(tmp_path):
    d = tmp_path / 'train' / 'a'; d.mkdir(parents=True)
    for i in range(40): (d / f'{i}.jpg').write_bytes(b'garbage')
    ds = make_dataset(tmp_path, transform=make_transforms(32))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        fct.test_fail(lambda: SeededSamples(ds)[(0, 1)], contains='unreadable images in a row')

def test_resolve_data_creates_a_download_folder_only_when_asked(tmp_path):
    target = tmp_path / 'data' / 'cifar10'
    fct.test_fail(lambda: resolve_data(target), contains='does not exist')
    assert not target.exists()
    assert resolve_data(target, create=True) == target and target.is_dir()
    fct.test_fail(lambda: resolve_data(tmp_path / 'x.tar.gz', create=True), contains='does not exist')   # never for archives


def test_course_data_uses_ijepa_data_or_says_why_not(toy, tmp_path, monkeypatch, capsys):
    "The lessons' data: the folder IJEPA_DATA names; a missing one gives None and one line, and the lesson goes on."
    from ijepa_edu.data import course_data
    monkeypatch.setenv('IJEPA_DATA', str(toy))
    assert course_data() == toy
    monkeypatch.setenv('IJEPA_DATA', str(tmp_path / 'nowhere.tar.gz'))
    assert course_data() is None
    out = capsys.readouterr().out
    assert out.count('\n') == 1 and 'No CIFAR-10 here' in out and 'generated images' in out
