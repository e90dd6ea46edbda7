"""Setup: choose the data, the teacher, the student, the loss and the training; then start.

Every widget sets one RunConfig field (its key is ``setup-<section>-<field>``); the resolved
config is shown as YAML, downloadable, and can be uploaded back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import streamlit as st

from perco_viz.coherence import KERNELS, METRICS
from perco_viz.config import ConfigError
from perco_viz.data import DATASET_NAMES
from perco_viz.distill import available_devices
from perco_viz.losses import LOSS_NAMES, LOSSES
from perco_viz.models import STUDENT_ARCHS, default_cache_dir
from perco_viz.safe_io import InputFileError, max_file_bytes
from perco_viz.sessions import SessionError, format_bytes, is_within, ttl_seconds
from ui import common
from ui import setup_form as form
from ui.setup_form import key as K

common.page("Setup", "Choose the data, the teacher, the student and the loss. Everything starts at the demo's "
            "settings: change what you want, then start the training.")
form.init_state(st.session_state, common.demo_config())
S = st.session_state
KEEP = "session"  # widget values survive hiding (e.g. tau while another loss is chosen) and page switches
problems: list[str] = []

try:
    UPLOAD_MB = max(1, max_file_bytes() // 2**20)
except InputFileError as exc:
    common.show_error(exc, "The upload size limit is misconfigured")
    UPLOAD_MB = 200
PATHS_ON = common.server_paths_on()  # the operator allows paths on the server (PERCO_VIZ_DATA_ROOTS)
TRUSTED = common.trusts_torchscript()  # the operator trusts TorchScript uploads (PERCO_VIZ_TRUST_TORCHSCRIPT=1)


def applied(section: str, name: str):
    """The field's value in the config last loaded into the form (keeps slider ranges stable)."""
    return S.get(form.APPLIED, {}).get(section, {}).get(name)


def bounds(section: str, name: str, lo, hi):
    """Slider range widened to hold the loaded config's value."""
    value = applied(section, name)
    return (lo, hi) if value is None else (min(lo, value), max(hi, value))


def number(where, label: str, section: str, name: str, lo, hi, **kwargs):
    """A number input for one RunConfig field (range widened to hold the loaded config's value)."""
    return where.number_input(label, *bounds(section, name, lo, hi), key=K(section, name), persist_state=KEEP,
                              **kwargs)


def path_field(where, label: str, section: str, name: str, placeholder: str, **kwargs) -> None:
    """A text input for a path on the server where the operator allows them; else the file's name."""
    if PATHS_ON:
        where.text_input(label, key=K(section, name), persist_state=KEEP, placeholder=placeholder, **kwargs)
        return
    value = (S.get(K(section, name)) or "").strip()
    if value:
        own = is_within(Path(value), common.session_space().uploads)
        where.caption(f"{label}: `{Path(value).name if own else value}`" + (" (uploaded)" if own else ""))


def path_allowed(section: str, name: str, where) -> bool:
    """Whether the path in the field may be read by this session; else the message in ``where``."""
    value = (S.get(K(section, name)) or "").strip()
    if not value:
        return True
    try:
        common.check_path(value, f"{section}.{name}")
    except SessionError as exc:
        where.error(f"This path cannot be used: {exc}")
        problems.append(f"the {section}'s path")
        return False
    return True


def choices(section: str, name: str, base) -> list:
    """Select-slider choices plus the loaded config's value."""
    value = applied(section, name)
    return sorted(set(base) | ({value} if value is not None else set()))


# --------------------------------------------------------------------------- sections
def data_section():
    """Dataset widgets; returns the loaded Dataset or None."""
    st.subheader("1 · Data")
    name = st.selectbox("Dataset", DATASET_NAMES, key=K("data", "name"), format_func=form.dataset_label,
                        on_change=form.on_dataset_change, persist_state=KEEP,
                        help="The inputs the teacher and the student both see.")
    st.caption(form.DATA_HELP.get(name, ""))
    kind = form.dataset_kind(name)
    if kind == "synthetic":
        c1, c2 = st.columns(2)
        c1.select_slider("Points", choices("data", "n_samples", form.POINT_CHOICES), key=K("data", "n_samples"),
                         format_func=lambda v: f"{v:,}", persist_state=KEEP,
                         help="How many points to generate; a share of them is held out (see More data options).")
        c2.slider("Noise", *bounds("data", "noise", 0.0, 1.0), step=0.01, key=K("data", "noise"),
                  persist_state=KEEP, help="Standard deviation of the Gaussian noise added to every coordinate.")
    elif kind == "file":
        upload_key = f"setup-data-upload-{name}"
        st.file_uploader(f"Upload a .{name} file", type=[name], key=upload_key, on_change=form.on_data_upload,
                         args=(upload_key,), max_upload_size=UPLOAD_MB,
                         help=f"Checked, then kept in this session's own folder (at most {UPLOAD_MB:,} MB).")
        form.show_message("data")
        c1, c2 = st.columns([3, 1]) if PATHS_ON else (st, st.columns([1, 2])[0])
        path_field(c1, "File", "data", "path", "filled in by the upload, or a path on this machine")
        c2.text_input("Label column", key=K("data", "label_column"), persist_state=KEEP, placeholder="label or y",
                      help="Which column (CSV) or array (NPZ) holds the labels. Empty: one named label or y, "
                           "if any; otherwise the data are unlabeled.")
    elif kind == "folder":
        path_field(st, "Image folder", "data", "path", "/path/to/images — one sub-folder per class")
    elif kind == "root":
        path_field(st, "Dataset folder", "data", "path", f"empty: {default_cache_dir() / 'datasets'}",
                   help="The folder that holds the dataset's files (torchvision's layout).")
        if not PATHS_ON:
            st.caption("Read from the server's own dataset folder.")
        st.checkbox("Download allowed", key=K("data", "download"), persist_state=KEEP,
                    help="Off: only files already in the folder are read. On: torchvision may download the "
                         "dataset into the folder (needs torchvision and a network).")
        st.select_slider("Training points (cap)", choices("data", "n_samples", form.POINT_CHOICES),
                         key=K("data", "n_samples"), format_func=lambda v: f"{v:,}", persist_state=KEEP,
                         help="A stratified sample of the official training split; the test split is cut in "
                              "proportion. Fewer points train faster.")
    if kind not in ("builtin", "synthetic") and not PATHS_ON:
        st.caption(common.SERVER_PATHS_OFF)
    summary = st.empty()  # filled once the dataset loads, above the advanced options
    with st.expander("More data options"):
        c1, c2, c3 = st.columns(3)
        c1.slider("Held-out share", *bounds("data", "test_fraction", 0.05, 0.5), step=0.05,
                  key=K("data", "test_fraction"), persist_state=KEEP,
                  help="Share of the data kept out of training; the probe set is drawn from it.")
        number(c2, "Probe set size", "data", "probe_size", 3, 100_000, step=50,
               help="Held-out points every snapshot is measured on (PC, c_i, embeddings).")
        number(c3, "Split seed", "data", "seed", 0, 2**31 - 1,
               help="Fixes the train/held-out split and the synthetic points.")

    cfg = form.config_from_values(S)
    if kind in ("file", "folder") and not cfg.data.path:
        if kind == "file":
            summary.info("Upload a file to continue." if not PATHS_ON else "Upload a file or give a path to continue.")
        else:
            summary.info("Give a folder to continue." if PATHS_ON else
                         "This dataset is a folder on the server, and this server reads only uploads: choose "
                         "another dataset.")
        problems.append("the data")
        return None
    if not path_allowed("data", "path", summary):
        return None
    try:
        ds = form.load_dataset(cfg)
    except Exception as exc:  # noqa: BLE001 — any loader error is shown, never a traceback
        summary.error(f"The dataset could not be loaded: {exc}")
        problems.append("the dataset")
        return None
    summary.success(form.describe_dataset(ds), icon=":material/check_circle:")
    return ds


def teacher_section(ds):
    """Teacher widgets; returns the teacher's feature width or None."""
    st.subheader("2 · Teacher")
    kinds = form.teacher_kinds(TRUSTED, S.get(K("teacher", "kind")))
    kind = st.selectbox("Teacher", kinds, key=K("teacher", "kind"), format_func=form.teacher_label,
                        on_change=form.on_teacher_change, persist_state=KEEP,
                        help="The frozen network whose perception the student learns.")
    st.caption(form.TEACHER_HELP.get(kind, ""))
    if kind == "torchscript" and not TRUSTED:
        st.error(common.TORCHSCRIPT_OFF)
        problems.append("the teacher")
        return None
    if kind == "torchscript":
        st.warning(common.TORCHSCRIPT_WARNING, icon=":material/warning:")
    if kind in form.TEACHER_NEEDS_ARCH:
        st.text_input("Architecture", key=K("teacher", "arch"), persist_state=KEEP, placeholder="resnet18",
                      on_change=form.on_teacher_change, help=f"A {kind} model name.")
    if kind not in form.TEACHER_NO_FILE:
        upload_key = f"setup-teacher-upload-{kind}"
        st.file_uploader("Upload the weights file" if kind != "torchscript" else "Upload the TorchScript file",
                         type=form.TEACHER_FILE_TYPES.get(kind, form.WEIGHT_TYPES), key=upload_key,
                         on_change=form.on_teacher_upload, args=(upload_key,), max_upload_size=UPLOAD_MB,
                         help="Kept in this session's own folder. Pickles with Python objects are refused.")
        form.show_message("teacher")
        path_field(st, "File", "teacher", "path", "filled in by the upload, or a path on this machine",
                   on_change=form.on_teacher_change)
        if not PATHS_ON:
            st.caption(common.SERVER_PATHS_OFF)
    if ds is None:
        st.selectbox("Feature layer", [""], key=K("teacher", "layer"), format_func=form.layer_label,
                     persist_state=KEEP, disabled=True, help="Available once the dataset loads.")
        return None

    cfg = form.config_from_values(S)
    data_key, t = form.data_json(cfg), cfg.teacher
    if kind not in form.TEACHER_NO_FILE and not t.path:
        st.info("Upload the teacher's file (or give its path) to continue.")
        problems.append("the teacher's file")
        return None
    if not path_allowed("teacher", "path", st):
        return None
    stamp = form.file_stamp(t.path)
    try:
        with st.spinner("Loading the teacher to list its layers…"):
            layers = form.teacher_layers(data_key, t.kind, t.arch, t.path, stamp, TRUSTED)
            default = form.teacher_shape(data_key, form.section_json(dataclasses.replace(t, layer=None)), stamp,
                                         TRUSTED)
    except Exception as exc:  # noqa: BLE001
        common.show_error(exc, "The teacher could not be loaded")
        problems.append("the teacher")
        return None
    extra = applied("teacher", "layer")
    options = ["", *layers, *([extra] if extra and extra not in layers else [])]
    default_name = form.describe_default_layer(default)
    layer = st.selectbox("Feature layer", options, key=K("teacher", "layer"), persist_state=KEEP,
                         format_func=lambda v: form.layer_label(v, default_name), disabled=len(options) == 1,
                         help="Which module's output are the teacher's features. The default is the built-in "
                              "teacher's embed layer, else the input of a classifier head (penultimate layer), "
                              "else the model's output.")
    t = form.config_from_values(S).teacher
    try:
        shape = form.teacher_shape(data_key, form.section_json(t), stamp, TRUSTED)
    except Exception as exc:  # noqa: BLE001
        common.show_error(exc, f"Layer {layer!r} does not give features")
        problems.append("the teacher's layer")
        return None
    params = f" · {shape['params']:,} parameters" if shape["params"] else " (the raw inputs)"
    status = f" · {form.builtin_teacher_status(ds)}" if kind == "builtin" else ""
    st.caption(f"Teacher features: **{shape['dim']:,}-d**{params}{status}")
    return shape["dim"]


def student_section(ds, teacher_dim):
    """Student widgets."""
    st.subheader("3 · Student")
    archs = [a for a in STUDENT_ARCHS if ds is None or ds.is_image or a not in form.IMAGE_ONLY_STUDENTS]
    if S.get(K("student", "arch")) not in archs:
        S[K("student", "arch")] = archs[0]
    c1, c2 = st.columns([1, 2])
    arch = c1.selectbox("Student", archs, key=K("student", "arch"), persist_state=KEEP,
                        help="The small network that is trained. CNN is offered for image data only.")
    c2.slider("Feature width (dim)", *bounds("student", "dim", 2, 64), key=K("student", "dim"), persist_state=KEEP,
              help="Width of the student's features: small widths show the relaxation best — the student "
                   "cannot copy the teacher's geometry, only its ranking.")
    st.caption(form.STUDENT_HELP.get(arch, ""))
    if arch == "file":
        upload_key = "setup-student-upload"
        st.file_uploader("Upload the student file", type=form.student_file_types(TRUSTED), key=upload_key,
                         on_change=form.on_student_upload, args=(upload_key,), max_upload_size=UPLOAD_MB,
                         help="Kept in this session's own folder. Pickles with Python objects are refused.")
        if TRUSTED:
            st.warning(common.TORCHSCRIPT_WARNING, icon=":material/warning:")
        else:
            st.caption(common.TORCHSCRIPT_OFF)
        form.show_message("student")
        path_field(st, "File", "student", "path", "filled in by the upload, or a path on this machine")
    with st.expander("More student options"):
        number(st, "Hidden width", "student", "hidden", 1, 8192, step=32,
               help="Width of the built-in student's hidden layers.")
    if ds is None:
        return
    s = form.config_from_values(S).student
    if arch == "file" and not s.path:
        st.info("Upload the student's file (or give its path) to continue.")
        problems.append("the student's file")
        return
    if not path_allowed("student", "path", st):
        return
    try:
        shape = form.student_shape(form.data_json(form.config_from_values(S)), form.section_json(s),
                                   form.file_stamp(s.path), TRUSTED)
    except Exception as exc:  # noqa: BLE001
        common.show_error(exc, "The student could not be built")
        problems.append("the student")
        return
    ratio = f" (the teacher's are {teacher_dim:,}-d)" if teacher_dim else ""
    st.caption(f"Student features: **{shape['dim']:,}-d**{ratio} · {shape['params']:,} parameters")


def loss_section():
    """Loss widgets; coherence options only when the chosen loss takes them."""
    st.subheader("4 · Loss")
    name = st.selectbox("Transfer loss", LOSS_NAMES, key=K("loss", "name"), persist_state=KEEP,
                        help="What the student minimizes. The others are class-unaware baselines to compare with.")
    st.caption(getattr(LOSSES[name], "summary", ""))
    takes = getattr(LOSSES[name], "defaults", {})
    cols = iter(st.columns(3))  # filled from the left: only the options this loss takes
    if "tau" in takes:
        next(cols).select_slider("τ (tau)", choices("loss", "tau", form.TAU_CHOICES), key=K("loss", "tau"),
                                 persist_state=KEEP,
                                 help="Soft-rank temperature: smaller is closer to the hard ranks, larger gives "
                                      "smoother gradients. Distances are normalized per anchor, so τ is scale-free.")
    if "kernel" in takes:
        next(cols).selectbox("Kernel", KERNELS, key=K("loss", "kernel"), persist_state=KEEP,
                             help="The soft step that replaces 1[a < b]. ramp (the default) is exact and fast: "
                                  "O(n² log n) by sorting; sigmoid is smooth everywhere but slower.")
    uses = "used by the loss and to measure" if "metric" in takes else "used to measure"
    next(cols).selectbox("Metric", METRICS, key=K("loss", "metric"), persist_state=KEEP,
                         help=f"Dissimilarity δ between features: {uses} PC and c_i on every snapshot.")
    with st.expander("Advanced loss options"):
        a1, a2 = st.columns(2)
        if "anchors" in takes:
            number(a1, "Anchors per batch (0 = all)", "loss", "anchors", 0, 100_000, step=16,
                   help="Rank over this many random anchors per batch, for very large batches. "
                        "0: every point of the batch is an anchor.")
        (a2 if "anchors" in takes else a1).selectbox(
            "Teacher metric", ["", *METRICS], key=K("loss", "teacher_metric"), persist_state=KEEP,
            format_func=lambda m: m or "same as the student's",
            help=f"Dissimilarity for the teacher's features, if different from the student's ({uses} PC).")
        b1, b2, b3 = st.columns(3)
        number(b1, "Cross-entropy weight", "loss", "ce_weight", 0.0, 100.0, step=0.1,
               help="Adds cross-entropy on the labels through a linear head on the student (0 = off; needs labels).")
        number(b2, "KD weight", "loss", "kd_weight", 0.0, 100.0, step=0.1,
               help="Adds Hinton KD on logits (0 = off; needs labels and a teacher with a head).")
        number(b3, "KD temperature", "loss", "kd_temperature", 0.1, 100.0, step=0.5,
               help="Temperature of the KD term.")


def training_section():
    """Optimizer and device widgets."""
    st.subheader("5 · Training")
    c1, c2, c3 = st.columns(3)
    number(c1, "Epochs", "train", "epochs", 1, 10_000,
           help="Passes over the training split; a snapshot is taken after each.")
    c2.select_slider("Batch size", choices("train", "batch_size", form.BATCH_CHOICES), key=K("train", "batch_size"),
                     persist_state=KEEP, help="Points per step. The coherence loss ranks within a batch, so "
                                              "larger batches see more of the perception at once.")
    number(c3, "Learning rate", "train", "lr", 1e-6, 1.0, step=1e-4, format="%.4g",
           help="AdamW's learning rate, with a cosine schedule to 0.")
    d1, d2, d3 = st.columns(3)
    number(d1, "Weight decay", "train", "weight_decay", 0.0, 1.0, step=1e-4, format="%.4g",
           help="AdamW's weight decay.")
    number(d2, "Seed", "train", "seed", 0, 2**31 - 1, help="Fixes the student's initialisation and the batches.")
    devices = available_devices()
    if S.get(K("train", "device")) not in devices:
        devices = [*devices, S.get(K("train", "device"))]
    device = d3.selectbox("Device", devices, key=K("train", "device"), persist_state=KEEP,
                          help="auto picks a CUDA GPU, then Apple's MPS, then the CPU.")
    here = [d for d in available_devices() if d not in ("auto", "cpu")]
    st.caption("Devices here: CPU" + (f" and {', '.join(d.upper() for d in here)}" if here else " only (no GPU "
               "found). For a GPU server, download the configuration and run it there with `perco-viz distill`."))
    if device not in available_devices():
        st.warning(f"Device {device!r} is not available here: choose auto or cpu to train on this machine.")
        problems.append("the device")
    with st.expander("More training options"):
        e1, e2 = st.columns(2)
        number(e1, "Snapshot every … steps", "train", "snapshot_every", 0, 1_000_000,
               help="Also measure the student every this many steps: smoother live curves, a little slower. "
                    "0: once per epoch only.")
        e2.checkbox("bf16 autocast on CUDA", key=K("train", "amp"), persist_state=KEEP,
                    help="Faster on recent GPUs; ignored on the CPU.")


def config_panel():
    """The resolved config: YAML, download, upload, use, start."""
    st.subheader("Configuration")
    st.text_input("Run name", key=K("", "name"), persist_state=KEEP, placeholder="optional",
                  help="Names the run's folder and labels it in the run pickers.")
    try:
        cfg = form.config_from_values(S)
    except ConfigError as exc:
        common.show_error(exc, "The form does not make a valid configuration")
        return
    if problems:
        st.warning(f"Fix {', '.join(problems)} first: see the messages on the left.")
    b1, b2 = st.columns(2)
    if b1.button("Use this configuration", key="setup-use", disabled=bool(problems), width="stretch",
                 help="The Distill page's Start button will use it."):
        form.store_config(S, cfg)
        st.toast("Configuration stored: Distill will use it.", icon=":material/check_circle:")
    if b2.button("▶ Start training", key="setup-start", type="primary", disabled=bool(problems), width="stretch",
                 help="Store this configuration, start the run and watch it live."):
        form.store_config(S, cfg)
        if common.start_run(cfg):
            st.switch_page("pages/2_Distill.py")
    stored = S.get("setup_config")
    if stored is not None and stored == cfg:
        st.caption(":material/check_circle: This is the configuration Distill will use.")
    elif stored is not None:
        st.caption("Distill still uses the configuration stored earlier: press **Use this configuration** to "
                   "store this one.")
    st.code(cfg.to_yaml(), language="yaml", wrap_lines=True)
    st.download_button("Download config.yaml", cfg.to_yaml(), file_name="config.yaml", mime="application/x-yaml",
                       key="setup-download", icon=":material/download:",
                       help="Run it anywhere: perco-viz distill --config config.yaml")


def config_io():
    """Upload a configuration, or reset to the demo: drawn before anything else can fail, so a bad
    configuration (or a bad value left in a widget) never takes the way out with it."""
    st.file_uploader("Load a configuration (YAML or JSON)", type=["yaml", "yml", "json"], key="setup-config-upload",
                     on_change=form.on_config_upload, max_upload_size=1,
                     help="A config.yaml downloaded here, or the config.json of any run: it fills the form.")
    form.show_message("config")
    st.button("Reset to the demo", key="setup-reset", on_click=form.reset_to_demo,
              help="Back to the built-in demo's settings.")


def files_panel():
    """This session's folder: how full it is, and a way to free it."""
    space = common.session_space()
    with st.expander("This session's files"):
        try:
            used, limit, ttl_h = space.usage(), space.limit(), ttl_seconds() / 3600
        except SessionError as exc:
            common.show_error(exc, "The session limits are misconfigured")
            return
        f = format_bytes
        st.progress(min(1.0, used["total"] / limit), text=f"{f(used['total'])} of {f(limit)} used: uploads "
                    f"{f(used['uploads'])}, runs {f(used['runs'])}")
        st.caption(f"Your uploads and runs are kept in this session's own folder, which no other session can read. "
                   f"It is deleted {ttl_h:g} hours after your last visit.")
        st.button("Delete my uploads", key="setup-delete-uploads", on_click=form.delete_uploads,
                  disabled=used["uploads"] == 0, icon=":material/delete:",
                  help="Frees their space; the fields that used them are emptied. Runs are kept.")
        form.show_message("files")


# --------------------------------------------------------------------------- layout
left, right = st.columns([3, 2], gap="large")
with right:
    panel = st.container()  # filled last, above the upload and reset drawn now
    config_io()
    files = st.container()
with left:
    with st.container(border=True):
        dataset = data_section()
    with st.container(border=True):
        t_dim = teacher_section(dataset)
    with st.container(border=True):
        student_section(dataset, t_dim)
    with st.container(border=True):
        loss_section()
    with st.container(border=True):
        training_section()
with panel:
    config_panel()
with files:
    files_panel()
