# Installs windows_exporter on every instance of the given Windows scale sets with the
# Microsoft.Powershell DSC extension, after AKS's own bootstrap extension (vmssCSE).
#
# Why DSC and not a second Custom Script Extension: AKS bootstraps Windows nodes with a
# CustomScriptExtension named vmssCSE, and Windows allows one extension per handler type, so a
# second CustomScriptExtension is rejected ("Multiple VMExtensions per handler not supported for
# OS type 'Windows'"). DSC also re-tests the state (TestScript) instead of running a one-shot
# command. See deploy/README.md for support caveats (AKS does not support custom extensions on
# its node scale sets).

locals {
  package_files = ["install-windows-exporter.ps1", "WindowsExporterDsc.ps1"]
  # Content hash of the package sources: a changed script gets a new blob name, hence a new
  # configuration URL, hence a new extension model that re-runs on the instances.
  package_hash = substr(sha256(join("", [for f in local.package_files : filesha256("${path.module}/scripts/${f}")])), 0, 16)
  blob_name    = "windows-exporter-dsc-${local.package_hash}.zip"
  msi_url      = coalesce(var.msi_url, "https://github.com/prometheus-community/windows_exporter/releases/download/v${var.windows_exporter_version}/windows_exporter-${var.windows_exporter_version}-amd64.msi")
}

data "archive_file" "dsc_package" {
  type        = "zip"
  output_path = "${path.root}/.terraform/tmp/${local.blob_name}"

  dynamic "source" {
    for_each = local.package_files
    content {
      filename = source.value
      content  = file("${path.module}/scripts/${source.value}")
    }
  }
}

data "azurerm_storage_account" "package" {
  name                = var.storage_account_name
  resource_group_name = var.storage_account_resource_group_name
}

resource "azurerm_storage_blob" "dsc_package" {
  name                   = local.blob_name
  storage_account_name   = var.storage_account_name
  storage_container_name = var.storage_container_name
  type                   = "Block"
  source                 = data.archive_file.dsc_package.output_path
  content_md5            = data.archive_file.dsc_package.output_md5
}

# Read-only SAS for the one container; the package holds no secrets, but the container stays private.
data "azurerm_storage_account_blob_container_sas" "package" {
  connection_string = data.azurerm_storage_account.package.primary_connection_string
  container_name    = var.storage_container_name
  https_only        = true
  start             = "2024-01-01T00:00:00Z"
  expiry            = var.package_sas_expiry

  permissions {
    read   = true
    add    = false
    create = false
    write  = false
    delete = false
    list   = false
  }
}

resource "azurerm_virtual_machine_scale_set_extension" "windows_exporter" {
  for_each = toset(var.vmss_ids)

  name                         = var.extension_name
  virtual_machine_scale_set_id = each.value
  publisher                    = "Microsoft.Powershell"
  type                         = "DSC"
  type_handler_version         = var.dsc_type_handler_version
  auto_upgrade_minor_version   = true
  # Run only once AKS has bootstrapped the node (kubelet, containerd, HNS networking).
  provision_after_extensions = ["vmssCSE"]
  force_update_tag           = var.force_update_tag

  settings = jsonencode({
    wmfVersion = "latest"
    configuration = {
      url      = azurerm_storage_blob.dsc_package.url
      script   = "WindowsExporterDsc.ps1"
      function = "WindowsExporter"
    }
    configurationArguments = {
      Version           = var.windows_exporter_version
      Sha256            = lower(var.msi_sha256)
      ListenPort        = var.listen_port
      EnabledCollectors = join(",", var.enabled_collectors)
      FirewallException = var.firewall_exception
      RemoteAddresses   = join(",", var.firewall_remote_addresses)
      MsiUrl            = local.msi_url
      WebConfigFile     = var.web_config_file == null ? "" : var.web_config_file
    }
    privacy = {
      dataCollection = "Disable"
    }
  })

  # The web config's content goes with the SAS in the protected (encrypted) settings: the DSC
  # extension merges protectedSettings.configurationArguments into the public ones.
  protected_settings = jsonencode({
    configurationUrlSasToken = data.azurerm_storage_account_blob_container_sas.package.sas
    configurationArguments = {
      WebConfig = var.web_config == null ? "" : var.web_config
    }
  })

  lifecycle {
    precondition {
      condition     = var.firewall_exception || length(var.firewall_remote_addresses) > 0
      error_message = "With firewall_exception = false nothing reaches the exporter from pods; set firewall_exception = true (restricted by firewall_remote_addresses) or open the port another way."
    }
    precondition {
      condition     = var.web_config == null || var.web_config_file == null
      error_message = "Set web_config (the content, written to the node) or web_config_file (a file already on the node), not both."
    }
  }
}
