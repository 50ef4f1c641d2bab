output "extension_ids" {
  description = "Extension resource id per scale set id."
  value       = { for id, ext in azurerm_virtual_machine_scale_set_extension.windows_exporter : id => ext.id }
}

output "package_url" {
  description = "Blob URL of the DSC package (without SAS)."
  value       = azurerm_storage_blob.dsc_package.url
}

output "msi_url" {
  description = "URL the nodes download the windows_exporter MSI from."
  value       = local.msi_url
}

output "listen_port" {
  description = "Port windows_exporter listens on; the proxy's PROXY_PORT must name it (alone, or in its list)."
  value       = var.listen_port
}

output "firewall_remote_addresses" {
  description = "Source CIDRs the node firewall admits to listen_port."
  value       = var.firewall_remote_addresses
}
