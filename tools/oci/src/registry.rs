//! Pushing images to, and pulling them from, an OCI distribution registry
//! (through the `oci-client` crate). Host builds only.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::error::Error;
use crate::image::{WasmImage, MANIFEST_MEDIA_TYPE};
use crate::target::Target;

/// A registry client. Speaks plain HTTP to loopback registries (or when
/// told to), HTTPS to any other. Credentials come from `OCI_USERNAME` /
/// `OCI_PASSWORD` when set, else the registry is used anonymously.
pub struct Registry {
    target: Target,
    client: Client,
    auth: RegistryAuth,
    runtime: tokio::runtime::Runtime,
}

impl Registry {
    /// A client for `target`; `plain_http` also allows HTTP off loopback.
    pub fn connect(target: Target, plain_http: bool) -> Result<Registry, Error> {
        let protocol = if plain_http || target.is_loopback() {
            ClientProtocol::HttpsExcept(vec![target.registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..ClientConfig::default()
        });
        let auth = match (
            std::env::var("OCI_USERNAME").ok().filter(|u| !u.is_empty()),
            std::env::var("OCI_PASSWORD").ok(),
        ) {
            (Some(user), Some(password)) => RegistryAuth::Basic(user, password),
            _ => RegistryAuth::Anonymous,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::io)?;
        Ok(Registry {
            target,
            client,
            auth,
            runtime,
        })
    }

    /// The registry this client talks to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Pushes every blob into the repository of the module `name` (see
    /// [`Target::repository`]), then the manifest under `tag`. Returns the digest
    /// the registry reports, which must be the one computed locally.
    pub fn push(&self, name: &str, tag: &str, image: &WasmImage) -> Result<String, Error> {
        let reference = Reference::with_tag(
            self.target.registry.clone(),
            self.target.repository(name),
            tag.to_string(),
        );
        let where_ = format!("pushing {reference}");
        self.runtime
            .block_on(async {
                self.client
                    .auth(&reference, &self.auth, RegistryOperation::Push)
                    .await
                    .map_err(Error::registry)?;
                for blob in image.blobs() {
                    self.client
                        .push_blob(&reference, &blob.data, &blob.digest)
                        .await
                        .map_err(|e| Error::registry(e).context(format!("blob {}", blob.digest)))?;
                }
                let content_type = MANIFEST_MEDIA_TYPE
                    .parse()
                    .map_err(|_| Error::new("invalid manifest media type"))?;
                self.client
                    .push_manifest_raw(&reference, image.manifest.clone(), content_type)
                    .await
                    .map_err(|e| Error::registry(e).context("manifest"))?;
                // Ask the registry which digest the tag now names.
                self.client
                    .fetch_manifest_digest(&reference, &self.auth)
                    .await
                    .map_err(|e| Error::registry(e).context("reading the pushed digest"))
            })
            .map_err(|e| e.context(&where_))
            .and_then(|digest| {
                if digest == image.digest {
                    Ok(digest)
                } else {
                    Err(Error::new(format!(
                        "{where_}: the registry stored digest {digest}, the build computed {}",
                        image.digest
                    )))
                }
            })
    }

    /// Pulls the manifest `digest` (`sha256:...`) of a module's repository,
    /// by digest, and checks that its bytes hash to it.
    pub fn pull_manifest(&self, name: &str, digest: &str) -> Result<Vec<u8>, Error> {
        let reference = self.by_digest(name, digest);
        let (bytes, got) = self
            .runtime
            .block_on(
                self.client
                    .pull_manifest_raw(&reference, &self.auth, &[MANIFEST_MEDIA_TYPE]),
            )
            .map_err(|e| Error::registry(e).context(format!("pulling {reference}")))?;
        let actual = crate::image::sha256_digest(&bytes);
        if actual != digest || got != digest {
            return Err(Error::new(format!(
                "pulling {reference}: got a manifest with digest {actual} (registry says {got})"
            )));
        }
        Ok(bytes)
    }

    /// Pulls one blob of a module's repository; `oci-client` checks the
    /// bytes against the digest as they arrive.
    pub fn pull_blob(&self, name: &str, digest: &str) -> Result<Vec<u8>, Error> {
        let reference = self.by_digest(name, digest);
        let mut out = Vec::new();
        self.runtime
            .block_on(self.client.pull_blob(&reference, digest, &mut out))
            .map_err(|e| {
                Error::registry(e).context(format!("pulling blob {digest} of {reference}"))
            })?;
        Ok(out)
    }

    fn by_digest(&self, name: &str, digest: &str) -> Reference {
        Reference::with_digest(
            self.target.registry.clone(),
            self.target.repository(name),
            digest.to_string(),
        )
    }
}
