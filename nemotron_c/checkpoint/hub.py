"""Checkpoint names to local directories: a directory as it is, a Hub id ("org/name") through huggingface_hub's cache.

Files are resolved one at a time with hf_hub_download, not with snapshot_download, because which files a load
reads depends on what the repo holds (model.safetensors, or an index and the shards it names; tokenizer.json or
tokenizer.model), and file by file the cache-first rules are exact: a file pinned to a commit is served from the
cache without a request; a branch costs one request (offline: refs/<branch> names the commit); a file missing
offline is reported by name. snapshot_download would match patterns against every path of the repo (`*` crosses
folders, so `*.safetensors` also fetches nested and variant weights) and, offline, returns a snapshot folder
without checking that the files we read are in it.

The first file fixes the commit and every other file is fetched at that commit, so one load never mixes two
states of a branch that moves meanwhile, and all files land in one snapshot folder: the directory returned.
"""
import json
import os

# from_pretrained keywords that choose where the files come from (Transformers' names).
HUB_KWARGS = ("revision", "cache_dir", "local_files_only", "token", "subfolder", "force_download", "proxies")
INSTALL_HINT = 'pip install "nemotron_c[hub]"'


def pop_hub_kwargs(kwargs):
    """Removes HUB_KWARGS from a from_pretrained **kwargs dict and returns them."""
    return {key: kwargs.pop(key) for key in HUB_KWARGS if key in kwargs}


def resolve_directory(name_or_path, required, optional=(), *, revision=None, cache_dir=None,
                      local_files_only=False, token=None, subfolder="", force_download=False, proxies=None,
                      commit=None):
    """The local directory holding a checkpoint's files, `subfolder` included.

    name_or_path: a local directory (always wins, as in Transformers; nothing is checked here, the readers report
    missing files) or a Hub repo id. required: groups of alternative file names; the first name of each group the
    repo holds is fetched, and a group with none raises OSError. optional: names fetched when the repo holds them.
    A fetched index (`*.index.json`, a variant's `*.index.<variant>.json`) brings the shards its weight_map names.
    HF_HUB_OFFLINE=1 means local_files_only. commit: the commit `revision` was found at before
    (pinned_to_snapshot), to fetch from. From the Hub with no required group and none of the optional files: None.
    """
    name = os.fspath(name_or_path)
    subfolder = subfolder or ""
    if os.path.isdir(name):
        return os.path.join(name, subfolder) if subfolder else name
    try:  # the submodules by name: huggingface_hub loads its attributes lazily
        import huggingface_hub.constants
        import huggingface_hub.errors
        import huggingface_hub.file_download
        import huggingface_hub.utils
    except ImportError:
        raise ImportError(f"{name!r} is not a local directory; loading a Hugging Face Hub id needs huggingface_hub: "
                          f"{INSTALL_HINT}") from None
    try:
        huggingface_hub.utils.validate_repo_id(name)
    except huggingface_hub.errors.HFValidationError as e:
        raise FileNotFoundError(f"{name!r} is not a directory and not a valid Hub repo id ('org/name'): {e}") from None
    repo = HubRepo(huggingface_hub, name, revision, cache_dir, local_files_only, token, subfolder, force_download,
                   proxies, commit)
    for group in required:
        if not any(repo.fetch(file) for file in group):
            repo.missing(group)
    for file in optional:
        repo.fetch(file)
    if repo.snapshot is None:  # nothing required, and none of the optional files found
        return None
    return os.path.join(repo.snapshot, subfolder) if subfolder else repo.snapshot


def pinned_to_snapshot(hub_kwargs, name_or_path, directory):
    """hub_kwargs for fetching more files of the checkpoint resolve_directory found in `directory`: from a Hub
    snapshot, its commit (a branch may move between two fetches, and a commit's cached 404s spare requests)."""
    if os.path.isdir(os.fspath(name_or_path)):
        return hub_kwargs
    subfolder = hub_kwargs.get("subfolder") or ""
    snapshot = os.path.normpath(directory[: len(directory) - len(subfolder)] if subfolder else directory)
    return {**hub_kwargs, "commit": os.path.basename(snapshot)}


class HubRepo:
    """One from_pretrained call's view of a Hub repo at one commit (see the module docstring)."""

    def __init__(self, hub, repo_id, revision, cache_dir, local_files_only, token, subfolder, force_download, proxies,
                 commit=None):
        self.hub = hub
        self.repo_id = repo_id
        self.requested = revision or "main"
        self.revision = commit or self.requested
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else hub.constants.HF_HUB_CACHE
        # read at call time: huggingface_hub sets HF_HUB_OFFLINE from the environment when it is imported
        self.offline = bool(local_files_only) or hub.constants.is_offline_mode()
        self.options = {"token": token, "force_download": force_download, "local_files_only": self.offline}
        if proxies is not None:  # huggingface_hub 1.x and later take proxies from the environment and warn
            self.options["proxies"] = proxies
        self.subfolder = subfolder
        self.snapshot = None
        self.unreachable = None  # the error of a failed download attempt, when the Hub could not be reached

    def fetch(self, file):
        """The file's local path, or None when the repo does not hold it (or, offline, the cache does not)."""
        errors = self.hub.errors
        relative = "/".join(part for part in (self.subfolder, file) if part)
        if not self.options["force_download"] and self.hub.file_download.REGEX_COMMIT_HASH.fullmatch(self.revision):
            # a commit's earlier 404 is cached as .no_exist/<commit>/<file>: no request for what cannot be there
            cached = self.hub.try_to_load_from_cache(self.repo_id, relative, cache_dir=self.cache_dir,
                                                     revision=self.revision)
            if cached is self.hub._CACHED_NO_EXIST:
                return None
        try:
            path = self.hub.hf_hub_download(self.repo_id, relative, revision=self.revision, cache_dir=self.cache_dir,
                                            **self.options)
        except errors.GatedRepoError as e:
            raise OSError(f"{self.repo_id} is a gated repo: request access at https://huggingface.co/{self.repo_id} "
                          f"and pass token= (or log in with `hf auth login`).\n{e}") from e
        except errors.RepositoryNotFoundError as e:
            raise OSError(f"{self.repo_id} is not a local folder and is not a valid model identifier listed on "
                          "'https://huggingface.co/models'. If this is a private repository, pass token= (or log in "
                          "with `hf auth login`).") from e
        except errors.RevisionNotFoundError as e:
            raise OSError(f"{self.requested} is not a valid git identifier (branch name, tag name or commit id) that "
                          f"exists for {self.repo_id}: see https://huggingface.co/{self.repo_id} for its "
                          "revisions.") from e
        except errors.LocalEntryNotFoundError as e:  # offline or unreachable, and not in the cache
            self.unreachable = None if self.offline else e
            return None
        except errors.EntryNotFoundError:  # the Hub answered: the repo lacks the file
            return None
        except ValueError as e:  # a bad argument combination, such as force_download offline
            raise OSError(str(e)) from e
        if self.snapshot is None:
            self.snapshot = path[: len(path) - len(relative)].rstrip("/" + os.sep)
            self.revision = os.path.basename(self.snapshot)  # the commit: every later file comes from it
        if is_index(file):
            for shard in shard_names(path):
                if not self.fetch(shard):
                    self.missing((shard,))
        return path

    def missing(self, group):
        """Raises the OSError for a required group of files none of which could be had."""
        names = " or ".join(group)
        where = f"{self.repo_id} (revision {self.requested})"
        if self.unreachable is not None:
            why = f"the Hub could not be reached ({type(self.unreachable).__name__})"
        elif self.offline:
            why = ("downloads are disabled (HF_HUB_OFFLINE=1)" if self.hub.constants.is_offline_mode()
                   else "downloads are disabled (local_files_only=True)")
        else:
            raise OSError(f"{where} does not appear to have a file named {names}. Checkout "
                          f"'https://huggingface.co/{self.repo_id}/tree/{self.requested}' for available files.")
        if self.snapshot is None and not self.in_cache():
            raise OSError(f"{self.repo_id!r} is not a local folder and revision {self.requested!r} of it is not in the "
                          f"Hugging Face cache {self.cache_dir}, and {why}.")
        raise OSError(f"{where}: {names} is not in the Hugging Face cache {self.cache_dir}, and {why}.")

    def in_cache(self):
        """Whether the cache knows the requested revision (a snapshot folder for it exists)."""
        folder = self.hub.file_download.repo_folder_name(repo_id=self.repo_id, repo_type="model")
        storage = os.path.join(self.cache_dir, folder)
        commit = self.requested
        ref = os.path.join(storage, "refs", self.requested)
        if os.path.isfile(ref):
            with open(ref, encoding="utf-8") as f:
                commit = f.read().strip()
        return os.path.isdir(os.path.join(storage, "snapshots", commit))


def is_index(file):
    """Whether a weight file is an index of shards: model.safetensors.index.json, pytorch_model.bin.index.json, or a
    variant's, which Transformers names model.safetensors.index.fp16.json."""
    return file.endswith(".json") and ".index." in os.path.basename(file)


def shard_names(index_path):
    """The distinct file names an index's weight_map lists (hf_hub_download refuses names that leave the repo; the
    reader reports a malformed index with its own message)."""
    try:
        with open(index_path, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map")
    except (OSError, ValueError, RecursionError, AttributeError):
        return []
    return sorted({v for v in weight_map.values() if isinstance(v, str)}) if isinstance(weight_map, dict) else []
