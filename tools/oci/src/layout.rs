//! Images as OCI image layouts on disk (`oci-layout`, `index.json`,
//! `blobs/sha256/`), so that any OCI tool can copy them to a registry:
//! `skopeo copy oci:dist/oci/audit:0.1.0 docker://…`, `oras cp --from-oci-layout …`.

use std::path::Path;

use serde_json::json;

use crate::error::Error;
use crate::image::{WasmImage, MANIFEST_MEDIA_TYPE};

/// Writes `images` (each with its tag) as one layout in `dir`.
pub fn write(dir: &Path, images: &[(String, &WasmImage)]) -> Result<(), Error> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)
        .map_err(|e| Error::io(e).context(format!("creating {}", blobs.display())))?;
    let write_blob = |digest: &str, data: &[u8]| {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let path = blobs.join(hex);
        std::fs::write(&path, data)
            .map_err(|e| Error::io(e).context(format!("writing {}", path.display())))
    };
    let mut manifests = Vec::new();
    for (tag, image) in images {
        for blob in image.blobs() {
            write_blob(&blob.digest, &blob.data)?;
        }
        write_blob(&image.digest, &image.manifest)?;
        manifests.push(json!({
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": image.digest,
            "size": image.manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let files = [
        ("oci-layout", json!({ "imageLayoutVersion": "1.0.0" })),
        ("index.json", index),
    ];
    for (name, value) in files {
        let path = dir.join(name);
        let bytes = serde_json::to_vec_pretty(&value).map_err(Error::json)?;
        std::fs::write(&path, bytes)
            .map_err(|e| Error::io(e).context(format!("writing {}", path.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Variant;
    use serde_json::Value;

    #[test]
    fn layout_holds_every_blob_and_an_index_by_tag() {
        let module = b"\0asm\x01\0\0\0layout";
        let oci =
            WasmImage::build(Variant::Oci, "audit", "palisade_audit", "1.2.3", module).unwrap();
        let compat =
            WasmImage::build(Variant::Compat, "audit", "palisade_audit", "1.2.3", module).unwrap();
        let dir = std::env::temp_dir().join(format!("palisade-oci-layout-{}", std::process::id()));
        write(
            &dir,
            &[("1.2.3".into(), &oci), ("1.2.3-compat".into(), &compat)],
        )
        .unwrap();
        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], oci.digest);
        assert_eq!(
            index["manifests"][1]["annotations"]["org.opencontainers.image.ref.name"],
            "1.2.3-compat"
        );
        for image in [&oci, &compat] {
            for blob in image
                .blobs()
                .into_iter()
                .map(|b| (&b.digest, &b.data))
                .chain([(&image.digest, &image.manifest)])
            {
                let on_disk = std::fs::read(dir.join("blobs/sha256").join(&blob.0[7..])).unwrap();
                assert_eq!(&on_disk, blob.1);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
