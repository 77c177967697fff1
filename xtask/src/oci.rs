//! `cargo xtask oci <plugin.wasm> [--out <dir>] [--tag <name:tag>] [--variant compat|wasm]`:
//! packages the proxy-wasm plugin as an OCI image that Istio's `WasmPlugin` pulls, without
//! Docker.
//!
//! What Istio's fetcher accepts (`pkg/wasm/imagefetcher.go`, after the solo-io Wasm image
//! spec), and what we write:
//!
//! - **compat** (the default, and what Istio reads first for an OCI manifest): a regular OCI
//!   image whose last (here: only) layer is `application/vnd.oci.image.layer.v1.tar+gzip`
//!   holding a file named `plugin.wasm`. Every registry and tool takes it, as if it were built
//!   `FROM scratch` with `COPY plugin.wasm /`.
//! - **wasm** (the spec's "oci" variant, opt-in): exactly two layers, the runtime config
//!   `application/vnd.module.wasm.config.v1+json` and the raw module
//!   `application/vnd.module.wasm.content.layer.v1+wasm`. Istio falls back to it only when the
//!   compat reading fails, and some registries refuse custom media types.
//!
//! The output is an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`) and the
//! same layout as a tar (what `skopeo` calls an `oci-archive`). Both are reproducible: tar
//! entries are sorted with fixed mode, owner and mtime 0; the gzip header has mtime 0 and no
//! file name; JSON is written from structs (fixed key order), without a `created` time. The
//! same `.wasm` and the same `Cargo.lock` (hence the same compressor) give the same digests.
//!
//! Which digest goes into `WasmPlugin.spec.sha256`: for an `oci://` url Istio compares it with
//! the image **manifest digest** (`PrepareFetch` returns `img.Digest()`); for an `http(s)://`
//! url with the sha256 of the downloaded **module bytes**; a `file://` url is not checked. Both
//! are printed.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::{Compression, GzBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// `mediaType` of an OCI image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `mediaType` of an OCI image index (`index.json`).
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The compat variant's config: a regular image config.
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The compat variant's layer: a gzipped tar holding `plugin.wasm`.
pub const TAR_GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The wasm variant's config (also its first layer, as Istio wants two layers).
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
/// The wasm variant's module layer: the raw `.wasm`.
pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";

/// The file name Istio looks for in a compat layer (any directory; we put it at the root).
pub const PLUGIN_WASM: &str = "plugin.wasm";
/// Annotation naming an image's tag inside an OCI layout (`oras`, `skopeo` look it up).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The solo-io spec's annotation marking the compat variant.
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";
/// `org.opencontainers.image.title`: the wasm variant's module layer's file name.
pub const TITLE: &str = "org.opencontainers.image.title";

const USAGE: &str =
    "usage: cargo xtask oci <plugin.wasm> [--out <dir>] [--tag <name:tag>] [--variant compat|wasm]";

/// Which of the two layouts Istio accepts to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// One `tar+gzip` layer holding `plugin.wasm` (default).
    Compat,
    /// Two layers: the wasm runtime config and the raw module.
    Wasm,
}

impl Variant {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "compat" => Ok(Variant::Compat),
            "wasm" | "oci" => Ok(Variant::Wasm),
            _ => Err(format!(
                "unknown variant `{s}` (expected `compat` or `wasm`)"
            )),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Variant::Compat => "compat variant: one tar+gzip layer holding plugin.wasm",
            Variant::Wasm => "wasm variant: wasm config layer + raw module layer",
        }
    }
}

/// An image name and tag, `registry/path/name:tag` (the registry part is optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Everything before the tag.
    pub name: String,
    /// The tag; it becomes the layout's `org.opencontainers.image.ref.name`.
    pub tag: String,
}

impl Reference {
    /// Parses `name:tag`; the tag is after the last `:` that follows the last `/` (so a
    /// registry port is not taken for a tag).
    pub fn parse(s: &str) -> Result<Self, String> {
        let last = s.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match s.get(last..).and_then(|tail| tail.rfind(':')) {
            Some(i) => (
                s.get(..last + i).unwrap_or_default(),
                s.get(last + i + 1..).unwrap_or_default(),
            ),
            None => {
                return Err(format!(
                    "`{s}` has no tag: write it as `name:tag`, e.g. `palisade-proxy-wasm:0.1.0`"
                ));
            }
        };
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c));
        if !name_ok {
            return Err(format!(
                "`{name}` is not an image name (lower-case letters, digits, `.`, `_`, `-`, `/`)"
            ));
        }
        // The OCI distribution spec's tag grammar: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
        let tag_ok = tag.len() <= 128
            && tag
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !tag_ok {
            return Err(format!(
                "`{tag}` is not a tag (letters, digits, `_`, `.`, `-`; at most 128, not starting with `.` or `-`)"
            ));
        }
        Ok(Reference {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// A content descriptor: what a blob is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The blob's media type.
    pub media_type: String,
    /// `sha256:<64 hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations (sorted, so serialisation is stable).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    fn of(media_type: &str, bytes: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest: format!("sha256:{}", sha256_hex(bytes)),
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
        }
    }

    fn annotated(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// The digest's hex part (the blob's file name under `blobs/sha256/`).
    pub fn hex(&self) -> Result<&str, String> {
        self.digest
            .strip_prefix("sha256:")
            .filter(|h| is_sha256_hex(h))
            .ok_or_else(|| format!("`{}` is not a sha256 digest", self.digest))
    }
}

/// An OCI image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MANIFEST`].
    pub media_type: String,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// Manifest annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image index (`index.json` of a layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`INDEX`].
    pub media_type: String,
    /// The images, each with its tag in [`REF_NAME`].
    pub manifests: Vec<Descriptor>,
}

/// The compat variant's image config: an image with no command, for the `wasm`/`wasip1`
/// platform (Go's GOARCH/GOOS spelling, as the image spec asks).
#[derive(Debug, Serialize)]
struct ImageConfig {
    architecture: &'static str,
    os: &'static str,
    config: EmptyObject,
    rootfs: RootFs,
}

#[derive(Debug, Serialize)]
struct EmptyObject {}

#[derive(Debug, Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

/// The wasm variant's runtime config (solo-io spec): the module targets Envoy's proxy-wasm.
#[derive(Debug, Serialize)]
struct WasmRuntimeConfig {
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A built image, in memory: every blob by its hex digest, and the layout's `index.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Blobs by hex sha256: config, layers, manifest.
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// The layout's `index.json`.
    pub index: Vec<u8>,
    /// The manifest's descriptor (its digest is what an `oci://` WasmPlugin's `sha256` is).
    pub manifest: Descriptor,
    /// The layer that holds the module.
    pub layer: Descriptor,
    /// sha256 (hex) of the module itself (what an `https://` WasmPlugin's `sha256` is).
    pub wasm_sha256: String,
}

/// The content of an OCI image-layout's `oci-layout` file.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Builds the image for `wasm` in memory.
pub fn build(wasm: &[u8], reference: &Reference, variant: Variant) -> Result<Image, String> {
    if !wasm.starts_with(b"\0asm") || wasm.len() < 8 {
        // Istio rejects a fetched module without the 8-byte header; so do we, earlier.
        return Err("the input is not a wasm module (no `\\0asm` header)".into());
    }
    let mut blobs = BTreeMap::new();
    let mut put = |bytes: Vec<u8>, media_type: &str| {
        let d = Descriptor::of(media_type, &bytes);
        blobs.insert(sha256_hex(&bytes), bytes);
        d
    };
    // Neither the name nor the tag goes into the manifest (the tag is in `index.json` only):
    // the manifest digest depends on the module alone, wherever the image is pushed.
    let mut manifest_annotations = BTreeMap::new();
    let (config, layers, layer) = match variant {
        Variant::Compat => {
            let tar = plugin_tar(wasm)?;
            let diff_id = format!("sha256:{}", sha256_hex(&tar));
            let layer = put(gzip(&tar)?, TAR_GZIP_LAYER);
            let config = ImageConfig {
                architecture: "wasm",
                os: "wasip1",
                config: EmptyObject {},
                rootfs: RootFs {
                    kind: "layers",
                    diff_ids: vec![diff_id],
                },
            };
            let config = put(to_json(&config)?, IMAGE_CONFIG);
            manifest_annotations.insert(VARIANT_ANNOTATION.to_string(), "compat".to_string());
            (config, vec![layer.clone()], layer)
        }
        Variant::Wasm => {
            let config = put(
                to_json(&WasmRuntimeConfig {
                    kind: "envoy_proxy",
                })?,
                WASM_CONFIG,
            );
            let layer = put(wasm.to_vec(), WASM_LAYER).annotated(TITLE, PLUGIN_WASM);
            // Istio's reader of this variant wants exactly two layers and picks the module
            // by media type; the config blob is the other one.
            (config.clone(), vec![config, layer.clone()], layer)
        }
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST.to_string(),
        config,
        layers,
        annotations: manifest_annotations,
    };
    let manifest = put(to_json(&manifest)?, MANIFEST);
    let index = Index {
        schema_version: 2,
        media_type: INDEX.to_string(),
        manifests: vec![manifest.clone().annotated(REF_NAME, &reference.tag)],
    };
    Ok(Image {
        blobs,
        index: to_json(&index)?,
        manifest,
        layer,
        wasm_sha256: sha256_hex(wasm),
    })
}

/// The compat layer's tar: `plugin.wasm` alone, owner 0:0, mode 0644, mtime 0.
fn plugin_tar(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let mut tar = tar::Builder::new(Vec::new());
    append_file(&mut tar, PLUGIN_WASM, wasm)?;
    tar.into_inner()
        .map_err(|e| format!("cannot write the layer's tar: {e}"))
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_file(tar: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) -> Result<(), String> {
    let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
    tar.append_data(&mut h, path, bytes)
        .map_err(|e| format!("cannot add `{path}` to a tar: {e}"))
}

fn append_dir(tar: &mut tar::Builder<Vec<u8>>, path: &str) -> Result<(), String> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, path, std::io::empty())
        .map_err(|e| format!("cannot add `{path}` to a tar: {e}"))
}

/// gzip with a fixed header: mtime 0, no file name, OS "unknown" (255).
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::best());
    gz.write_all(bytes)
        .and_then(|()| gz.finish())
        .map_err(|e| format!("cannot gzip the layer: {e}"))
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("cannot serialise JSON: {e}"))
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` is 64 lower-case hex digits (the form `WasmPlugin.spec.sha256` requires).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The files of the layout, sorted by path: (path, bytes). Directories are implied.
fn layout_files(image: &Image) -> Vec<(String, &[u8])> {
    let mut files: Vec<(String, &[u8])> = image
        .blobs
        .iter()
        .map(|(hex, bytes)| (format!("blobs/sha256/{hex}"), bytes.as_slice()))
        .collect();
    files.push(("index.json".to_string(), image.index.as_slice()));
    files.push(("oci-layout".to_string(), OCI_LAYOUT));
    files.sort();
    files
}

/// Writes the image as an OCI layout directory. An existing `dir` is replaced only if it is
/// empty or is itself an OCI layout (has an `oci-layout` file), never any other directory.
pub fn write_layout(image: &Image, dir: &Path) -> Result<(), String> {
    if dir.exists() {
        let is_layout = dir.join("oci-layout").is_file();
        let is_empty = fs::read_dir(dir)
            .map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?
            .next()
            .is_none();
        if !is_layout && !is_empty {
            return Err(format!(
                "`{}` exists and is not an OCI layout; refusing to replace it",
                dir.display()
            ));
        }
        fs::remove_dir_all(dir).map_err(|e| format!("cannot remove `{}`: {e}", dir.display()))?;
    }
    for (path, bytes) in layout_files(image) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
        }
        fs::write(&path, bytes).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    }
    Ok(())
}

/// The layout as one tar (an `oci-archive`): sorted entries, directories first, fixed
/// metadata.
pub fn layout_tar(image: &Image) -> Result<Vec<u8>, String> {
    let mut tar = tar::Builder::new(Vec::new());
    append_dir(&mut tar, "blobs/")?;
    append_dir(&mut tar, "blobs/sha256/")?;
    for (path, bytes) in layout_files(image) {
        append_file(&mut tar, &path, bytes)?;
    }
    tar.into_inner()
        .map_err(|e| format!("cannot write the layout tar: {e}"))
}

/// What reading a layout back found: the chain index → manifest → module, every blob checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The tag recorded in `index.json`.
    pub tag: String,
    /// The manifest's descriptor from `index.json`.
    pub manifest_descriptor: Descriptor,
    /// The manifest.
    pub manifest: Manifest,
    /// Which layout it is.
    pub variant: Variant,
    /// The descriptor of the layer holding the module.
    pub layer: Descriptor,
    /// The paths of the compat layer's tar entries (empty for the wasm variant).
    pub layer_entries: Vec<String>,
    /// The module, as Istio would extract it.
    pub wasm: Vec<u8>,
}

/// Reads a layout directory back as Istio's fetcher would read the pushed image: the one
/// manifest of `index.json`, its config and layers (each blob's sha256 and size checked against
/// its descriptor and file name), then the module from the compat layer's `plugin.wasm` or the
/// wasm variant's module layer.
pub fn read_layout(dir: &Path) -> Result<Unpacked, String> {
    let read = |rel: &str| {
        let path = dir.join(rel);
        fs::read(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
    };
    let layout: serde_json::Value = serde_json::from_slice(&read("oci-layout")?)
        .map_err(|e| format!("`oci-layout` is not JSON: {e}"))?;
    if layout.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
        return Err("`oci-layout` does not say `imageLayoutVersion: 1.0.0`".into());
    }
    let index: Index = serde_json::from_slice(&read("index.json")?)
        .map_err(|e| format!("`index.json` is not an image index: {e}"))?;
    let [manifest_descriptor] = index.manifests.as_slice() else {
        return Err(format!(
            "`index.json` lists {} manifests, expected 1",
            index.manifests.len()
        ));
    };
    expect_media_type(manifest_descriptor, &[MANIFEST])?;
    let tag = manifest_descriptor
        .annotations
        .get(REF_NAME)
        .cloned()
        .ok_or_else(|| format!("the manifest in `index.json` has no `{REF_NAME}`"))?;
    let blob = |d: &Descriptor| -> Result<Vec<u8>, String> {
        let hex = d.hex()?;
        let bytes = read(&format!("blobs/sha256/{hex}"))?;
        let actual = sha256_hex(&bytes);
        if actual != hex {
            return Err(format!("blob `{hex}` has sha256 `{actual}`"));
        }
        if bytes.len() as u64 != d.size {
            return Err(format!(
                "blob `{hex}` is {} bytes, its descriptor says {}",
                bytes.len(),
                d.size
            ));
        }
        Ok(bytes)
    };
    let manifest: Manifest = serde_json::from_slice(&blob(manifest_descriptor)?)
        .map_err(|e| format!("the manifest is not an image manifest: {e}"))?;
    if manifest.schema_version != 2 || manifest.media_type != MANIFEST {
        return Err("the manifest is not an OCI image manifest, schema 2".into());
    }
    blob(&manifest.config)?;
    for layer in &manifest.layers {
        blob(layer)?;
    }
    let (variant, layer, layer_entries, wasm) = match manifest.layers.as_slice() {
        [layer] => {
            expect_media_type(&manifest.config, &[IMAGE_CONFIG])?;
            expect_media_type(layer, &[TAR_GZIP_LAYER])?;
            let (entries, wasm) = unpack_plugin(&blob(layer)?)?;
            (Variant::Compat, layer.clone(), entries, wasm)
        }
        [first, second] => {
            expect_media_type(&manifest.config, &[WASM_CONFIG])?;
            let layer = [first, second]
                .into_iter()
                .find(|l| l.media_type == WASM_LAYER)
                .ok_or_else(|| format!("no layer of type `{WASM_LAYER}`"))?;
            (Variant::Wasm, layer.clone(), Vec::new(), blob(layer)?)
        }
        other => {
            return Err(format!(
                "the image has {} layers, expected 1 or 2",
                other.len()
            ));
        }
    };
    Ok(Unpacked {
        tag,
        manifest_descriptor: manifest_descriptor.clone(),
        manifest,
        variant,
        layer,
        layer_entries,
        wasm,
    })
}

fn expect_media_type(d: &Descriptor, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&d.media_type.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "`{}` has media type `{}`, expected `{}`",
            d.digest,
            d.media_type,
            allowed.join("` or `")
        ))
    }
}

/// Unpacks a compat layer: every entry's path, and the bytes of `plugin.wasm`.
fn unpack_plugin(layer: &[u8]) -> Result<(Vec<String>, Vec<u8>), String> {
    let mut archive = tar::Archive::new(GzDecoder::new(layer));
    let mut entries = Vec::new();
    let mut wasm = None;
    for entry in archive
        .entries()
        .map_err(|e| format!("the layer is not a tar.gz: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("the layer is not a tar.gz: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("bad path in the layer: {e}"))?
            .to_string_lossy()
            .into_owned();
        if Path::new(&path).file_name().and_then(|n| n.to_str()) == Some(PLUGIN_WASM) {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read `{path}` from the layer: {e}"))?;
            wasm.get_or_insert(bytes);
        }
        entries.push(path);
    }
    let wasm = wasm.ok_or_else(|| format!("the layer has no `{PLUGIN_WASM}`"))?;
    Ok((entries, wasm))
}

/// Command-line arguments of `cargo xtask oci`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Args {
    wasm: PathBuf,
    out: PathBuf,
    reference: Reference,
    variant: Variant,
}

fn parse_args(args: &[String], default_out: PathBuf) -> Result<Args, String> {
    let mut wasm = None;
    let mut out = default_out;
    let mut reference = Reference {
        name: "palisade-proxy-wasm".to_string(),
        tag: env!("CARGO_PKG_VERSION").to_string(),
    };
    let mut variant = Variant::Compat;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("`{flag}` needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--out" | "-o" => out = PathBuf::from(value(arg)?),
            "--tag" | "-t" => reference = Reference::parse(&value(arg)?)?,
            "--variant" => variant = Variant::parse(&value(arg)?)?,
            "-h" | "--help" => return Err(USAGE.to_string()),
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option `{flag}`\n{USAGE}"));
            }
            path if wasm.is_none() => wasm = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument `{extra}`\n{USAGE}")),
        }
    }
    let wasm = wasm.ok_or_else(|| USAGE.to_string())?;
    Ok(Args {
        wasm,
        out,
        reference,
        variant,
    })
}

/// `cargo xtask oci ...`: build, write, read back, print the digests.
pub fn run(args: &[String], default_out: PathBuf) -> Result<(), String> {
    let args = parse_args(args, default_out)?;
    let wasm =
        fs::read(&args.wasm).map_err(|e| format!("cannot read `{}`: {e}", args.wasm.display()))?;
    let image = build(&wasm, &args.reference, args.variant)?;
    fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create `{}`: {e}", args.out.display()))?;
    let layout = args.out.join("layout");
    let tarball = args.out.join("image.tar");
    write_layout(&image, &layout)?;
    let tar = layout_tar(&image)?;
    fs::write(&tarball, &tar).map_err(|e| format!("cannot write `{}`: {e}", tarball.display()))?;

    // Read what was written back, as a registry client would, before telling anyone to push it.
    let back = read_layout(&layout)?;
    if back.wasm != wasm || back.manifest_descriptor.digest != image.manifest.digest {
        return Err("the layout read back differs from what was built".into());
    }

    let report = report(&image, &args, &layout, &tarball)?;
    // Written, not `println!`ed: a closed pipe (`| head`) is an error here, not a panic.
    std::io::stdout()
        .write_all(report.as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    Ok(())
}

/// What `cargo xtask oci` prints: the digests, labelled with where each one goes, and how to
/// push.
fn report(image: &Image, args: &Args, layout: &Path, tarball: &Path) -> Result<String, String> {
    let manifest_hex = image.manifest.hex()?;
    let (r, name, tag) = (&args.reference, &args.reference.name, &args.reference.tag);
    let (layout, tarball) = (layout.display(), tarball.display());
    let (manifest, layer, wasm) = (
        &image.manifest.digest,
        &image.layer.digest,
        &image.wasm_sha256,
    );
    let variant = args.variant.describe();
    Ok(format!(
        "OCI image {r} ({variant})
  layout dir:         {layout}
  layout tarball:     {tarball}
  manifest digest:    {manifest}
  layer digest:       {layer}
  plugin.wasm sha256: {wasm}

WasmPlugin `sha256` (Istio checks it against a different digest per url scheme):
  url: oci://<registry>/{name}:{tag}  ->  sha256: {manifest_hex}   (manifest digest)
       or pin the url itself: oci://<registry>/{name}@{manifest}
  url: https://<host>/plugin.wasm  ->  sha256: {wasm}   (plugin.wasm sha256)
  url: file:///<path>/plugin.wasm  ->  not checked by Istio

Push (no Docker needed; pick one):
  oras cp --from-oci-layout {layout}:{tag} <registry>/{name}:{tag}
  skopeo copy oci-archive:{tarball}:{tag} docker://<registry>/{name}:{tag}
"
    ))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    /// The smallest valid wasm module: the magic number and version 1.
    const FAKE_WASM: &[u8] = b"\0asm\x01\0\0\0";

    fn reference() -> Reference {
        Reference::parse("palisade-proxy-wasm:0.1.0").unwrap()
    }

    fn written(variant: Variant) -> (tempfile::TempDir, Image, Unpacked) {
        let dir = tempfile::tempdir().unwrap();
        let image = build(FAKE_WASM, &reference(), variant).unwrap();
        write_layout(&image, &dir.path().join("layout")).unwrap();
        let back = read_layout(&dir.path().join("layout")).unwrap();
        (dir, image, back)
    }

    /// Every file under blobs/sha256 is named by its own sha256, and nothing else is there.
    fn assert_blobs_named_by_digest(layout: &Path, image: &Image) {
        let mut names = Vec::new();
        for entry in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = fs::read(entry.path()).unwrap();
            assert_eq!(sha256_hex(&bytes), name, "blob file name is its sha256");
            assert_eq!(image.blobs[&name], bytes);
            names.push(name);
        }
        names.sort();
        assert_eq!(names, image.blobs.keys().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn compat_image_reads_back_as_one_tar_gzip_layer_holding_exactly_plugin_wasm() {
        let (dir, image, back) = written(Variant::Compat);
        let layout = dir.path().join("layout");
        assert_eq!(fs::read(layout.join("oci-layout")).unwrap(), OCI_LAYOUT);

        // index -> manifest
        let index: Index =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        assert_eq!(index.media_type, INDEX);
        assert_eq!(index.manifests.len(), 1);
        assert_eq!(index.manifests[0].media_type, MANIFEST);
        assert_eq!(index.manifests[0].annotations[REF_NAME], "0.1.0");
        assert_eq!(index.manifests[0].digest, image.manifest.digest);
        assert_eq!(back.tag, "0.1.0");

        // manifest -> config + one layer, with the media types Istio's compat reader wants
        assert_eq!(back.variant, Variant::Compat);
        assert_eq!(back.manifest.media_type, MANIFEST);
        assert_eq!(back.manifest.config.media_type, IMAGE_CONFIG);
        assert_eq!(back.manifest.layers.len(), 1);
        assert_eq!(back.manifest.layers[0].media_type, TAR_GZIP_LAYER);
        assert_eq!(back.manifest.annotations[VARIANT_ANNOTATION], "compat");
        assert_eq!(back.layer, image.layer);

        // layer -> exactly plugin.wasm, same bytes
        assert_eq!(back.layer_entries, vec!["plugin.wasm".to_string()]);
        assert_eq!(back.wasm, FAKE_WASM);
        assert_eq!(image.wasm_sha256, sha256_hex(FAKE_WASM));

        // every blob: named by its sha256, size as its descriptor says
        assert_blobs_named_by_digest(&layout, &image);
        for d in [
            &back.manifest_descriptor,
            &back.manifest.config,
            &back.layer,
        ] {
            let bytes = fs::read(layout.join("blobs/sha256").join(d.hex().unwrap())).unwrap();
            assert_eq!(bytes.len() as u64, d.size);
        }

        // the config's diff_id is the sha256 of the uncompressed layer
        let config: serde_json::Value =
            serde_json::from_slice(&image.blobs[back.manifest.config.hex().unwrap()]).unwrap();
        let mut tar = Vec::new();
        GzDecoder::new(image.blobs[image.layer.hex().unwrap()].as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            format!("sha256:{}", sha256_hex(&tar))
        );
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["os"], "wasip1");
    }

    #[test]
    fn compat_layer_entry_has_fixed_metadata() {
        let image = build(FAKE_WASM, &reference(), Variant::Compat).unwrap();
        let layer = &image.blobs[image.layer.hex().unwrap()];
        let mut archive = tar::Archive::new(GzDecoder::new(layer.as_slice()));
        let entries: Vec<_> = archive.entries().unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(entries.len(), 1);
        let h = entries[0].header();
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!(h.mode().unwrap(), 0o644);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        // gzip header: mtime (bytes 4..8) zero, no FNAME flag, OS 255.
        assert_eq!(&layer[4..8], &[0, 0, 0, 0]);
        assert_eq!(layer[3] & 0x08, 0);
        assert_eq!(layer[9], 255);
    }

    #[test]
    fn wasm_variant_has_two_layers_and_the_raw_module() {
        let (dir, image, back) = written(Variant::Wasm);
        assert_eq!(back.variant, Variant::Wasm);
        assert_eq!(back.manifest.config.media_type, WASM_CONFIG);
        let types: Vec<_> = back
            .manifest
            .layers
            .iter()
            .map(|l| l.media_type.as_str())
            .collect();
        assert_eq!(types, [WASM_CONFIG, WASM_LAYER]);
        assert_eq!(back.wasm, FAKE_WASM);
        // The module layer is the module itself, so its digest is the module's sha256.
        assert_eq!(back.layer.digest, format!("sha256:{}", image.wasm_sha256));
        assert_blobs_named_by_digest(&dir.path().join("layout"), &image);
    }

    #[test]
    fn the_same_input_twice_gives_the_same_digests_and_bytes() {
        for variant in [Variant::Compat, Variant::Wasm] {
            let a = build(FAKE_WASM, &reference(), variant).unwrap();
            let b = build(FAKE_WASM, &reference(), variant).unwrap();
            assert_eq!(a.manifest.digest, b.manifest.digest);
            assert_eq!(a.layer.digest, b.layer.digest);
            assert_eq!(a, b);
            assert_eq!(layout_tar(&a).unwrap(), layout_tar(&b).unwrap());
        }
        // Through the file system too.
        let (_d1, _, one) = written(Variant::Compat);
        let (_d2, _, two) = written(Variant::Compat);
        assert_eq!(one.manifest_descriptor, two.manifest_descriptor);
    }

    #[test]
    fn a_different_module_or_tag_changes_only_what_it_should() {
        let base = build(FAKE_WASM, &reference(), Variant::Compat).unwrap();
        let other_module = build(b"\0asm\x01\0\0\0\0", &reference(), Variant::Compat).unwrap();
        assert_ne!(base.manifest.digest, other_module.manifest.digest);
        assert_ne!(base.layer.digest, other_module.layer.digest);
        // Name and tag live in index.json only: the manifest digest does not depend on them.
        let other_tag = build(
            FAKE_WASM,
            &Reference::parse("registry.example.com/palisade/other:latest").unwrap(),
            Variant::Compat,
        )
        .unwrap();
        assert_eq!(base.manifest.digest, other_tag.manifest.digest);
        assert_ne!(base.index, other_tag.index);
    }

    #[test]
    fn layout_tarball_holds_the_layout_sorted_with_fixed_metadata() {
        let image = build(FAKE_WASM, &reference(), Variant::Compat).unwrap();
        let tar = layout_tar(&image).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut paths = Vec::new();
        let dir = tempfile::tempdir().unwrap();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            assert_eq!(entry.header().mtime().unwrap(), 0);
            paths.push(entry.path().unwrap().to_string_lossy().into_owned());
            entry.unpack_in(dir.path()).unwrap();
        }
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert_eq!(paths.len(), 2 + image.blobs.len() + 2);
        // The unpacked tarball is a layout that reads back to the same module.
        let back = read_layout(dir.path()).unwrap();
        assert_eq!(back.wasm, FAKE_WASM);
        assert_eq!(back.manifest_descriptor.digest, image.manifest.digest);
    }

    #[test]
    fn a_corrupted_blob_is_reported() {
        let (dir, image, _) = written(Variant::Compat);
        let layout = dir.path().join("layout");
        let layer = layout.join("blobs/sha256").join(image.layer.hex().unwrap());
        fs::write(&layer, b"not the layer").unwrap();
        let err = read_layout(&layout).unwrap_err();
        assert!(err.contains("has sha256"), "{err}");
    }

    #[test]
    fn input_that_is_not_wasm_is_refused() {
        let err = build(b"#!/bin/sh\n", &reference(), Variant::Compat).unwrap_err();
        assert!(err.contains("not a wasm module"), "{err}");
    }

    #[test]
    fn write_layout_refuses_to_replace_a_directory_that_is_not_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("precious.txt"), b"keep me").unwrap();
        let image = build(FAKE_WASM, &reference(), Variant::Compat).unwrap();
        let err = write_layout(&image, dir.path()).unwrap_err();
        assert!(err.contains("refusing"), "{err}");
        assert!(dir.path().join("precious.txt").exists());
        // An existing layout is replaced.
        let layout = dir.path().join("layout");
        write_layout(&image, &layout).unwrap();
        write_layout(&image, &layout).unwrap();
        assert_eq!(read_layout(&layout).unwrap().wasm, FAKE_WASM);
    }

    #[test]
    fn references_split_at_the_tag_not_at_a_registry_port() {
        let cases = [
            (
                "palisade-proxy-wasm:0.1.0",
                Some(("palisade-proxy-wasm", "0.1.0")),
            ),
            (
                "registry.example.com:5000/policy/palisade:v1",
                Some(("registry.example.com:5000/policy/palisade", "v1")),
            ),
            ("registry.example.com:5000/policy/palisade", None),
            ("palisade", None),
            ("Palisade:1", None),
            ("palisade:-1", None),
            ("palisade:", None),
        ];
        for (input, expected) in cases {
            let got = Reference::parse(input).ok();
            let got = got.as_ref().map(|r| (r.name.as_str(), r.tag.as_str()));
            assert_eq!(got, expected, "{input}");
        }
    }

    #[test]
    fn arguments_default_and_override() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let args = parse_args(&s(&["p.wasm"]), PathBuf::from("target/oci")).unwrap();
        assert_eq!(args.out, PathBuf::from("target/oci"));
        assert_eq!(args.reference.name, "palisade-proxy-wasm");
        assert_eq!(args.variant, Variant::Compat);
        let args = parse_args(
            &s(&[
                "p.wasm",
                "--out",
                "o",
                "--tag",
                "x/y:2",
                "--variant",
                "wasm",
            ]),
            PathBuf::new(),
        )
        .unwrap();
        assert_eq!(args.out, PathBuf::from("o"));
        assert_eq!(args.reference.to_string(), "x/y:2");
        assert_eq!(args.variant, Variant::Wasm);
        assert!(parse_args(&s(&[]), PathBuf::new()).is_err());
        assert!(parse_args(&s(&["p.wasm", "--tag"]), PathBuf::new()).is_err());
        assert!(parse_args(&s(&["p.wasm", "--bogus"]), PathBuf::new()).is_err());
    }
}
