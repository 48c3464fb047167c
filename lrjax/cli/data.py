"""``lrjax data``: prepare datasets offline and show what is prepared."""

from __future__ import annotations

DATASETS = ("mnist", "fashion_mnist", "cifar10")


def add_parser(sub, detailed: bool = False) -> None:
    from lrjax.cli import HelpFormatter

    p = sub.add_parser(
        "data",
        help="prepare and inspect datasets",
        description="Prepare tensorflow-datasets datasets (offline from the original files, "
        "or downloaded) and cache their decoded arrays; show what is prepared.",
        formatter_class=HelpFormatter,
    )
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    prep = dsub.add_parser(
        "prepare",
        help="prepare a dataset with tfds and cache its arrays",
        description="Prepare a dataset with tensorflow-datasets from the original distribution "
        "files (--raw-dir) or by downloading them, then cache its decoded arrays.",
        formatter_class=HelpFormatter,
    )
    prep.add_argument("name", choices=DATASETS, help="the dataset")
    prep.add_argument(
        "--raw-dir",
        help="directory with the original distribution files "
        "(default: $LRJAX_RAW_DIR; unset: tfds downloads them)",
    )
    prep.add_argument(
        "--data-dir", help="lrjax data root (default: $LRJAX_DATA_DIR, else ~/.cache/lrjax)"
    )
    prep.add_argument("--overwrite", action="store_true", help="rebuild an existing cache")
    info = dsub.add_parser(
        "info",
        help="list datasets and whether they are prepared",
        description="List the datasets lrjax knows and whether each is prepared, and where.",
        formatter_class=HelpFormatter,
    )
    info.add_argument(
        "--data-dir", help="lrjax data root (default: $LRJAX_DATA_DIR, else ~/.cache/lrjax)"
    )


def run(args) -> int:
    from lrjax.data import catalog

    if args.data_command == "prepare":
        from lrjax.cli import _common
        from lrjax.data.prepare import prepare_dataset

        with _common.flag_names(args):  # data_dir=... -> --data-dir=...
            prepare_dataset(
                args.name, raw_dir=args.raw_dir, data_dir=args.data_dir, overwrite=args.overwrite
            )
        return 0
    from lrjax.data.cache import cache_problem

    root = catalog.data_dir(args.data_dir)
    for name in catalog.DATASETS:
        path = catalog.cache_path(name, root)
        problem = cache_problem(path) if path.exists() else "not prepared"
        state = f"prepared  {path}" if problem is None else problem
        if path.exists() and problem is not None:
            state = f"broken    {path}: {problem}; lrjax data prepare {name} --overwrite"
        print(f"{name:15s} {state}")
    return 0
