variable "vmss_ids" {
  description = "Resource ids of the Windows node pools' virtual machine scale sets (in the cluster's node resource group, MC_*). See deploy/README.md for how to find them."
  type        = list(string)

  validation {
    condition     = length(var.vmss_ids) > 0
    error_message = "vmss_ids must name at least one scale set."
  }
  validation {
    condition = alltrue([
      for id in var.vmss_ids :
      can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.Compute/virtualMachineScaleSets/[^/]+$", id))
    ])
    error_message = "Each vmss_ids entry must be a scale set id: /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Compute/virtualMachineScaleSets/<name>."
  }
}

variable "windows_exporter_version" {
  description = "windows_exporter release to install, without the leading v (for example 0.31.3). The Prometheus rules in deploy/prometheus expect v0.31 metric names."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.windows_exporter_version))
    error_message = "windows_exporter_version must look like 0.31.3 (MAJOR.MINOR.PATCH, no leading v)."
  }
  validation {
    condition     = try(tonumber(split(".", var.windows_exporter_version)[0]) > 0 || tonumber(split(".", var.windows_exporter_version)[1]) >= 26, false)
    error_message = "windows_exporter_version must be 0.26.0 or later: the install script only knows the firewall properties of the 0.26+ MSI."
  }
}

variable "msi_sha256" {
  description = "SHA256 of windows_exporter-<version>-amd64.msi (from the release's sha256sums.txt). The install script refuses an MSI with another hash."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-fA-F]{64}$", var.msi_sha256))
    error_message = "msi_sha256 must be 64 hexadecimal characters."
  }
}

variable "msi_url" {
  description = "Where to download the MSI from. null means the GitHub release of windows_exporter_version; set it to a mirror (for example a storage account) if nodes have no egress to github.com."
  type        = string
  default     = null

  validation {
    condition     = var.msi_url == null || can(regex("^https://", var.msi_url))
    error_message = "msi_url must be an https:// URL."
  }
}

variable "listen_port" {
  description = "Port windows_exporter listens on (MSI property LISTEN_PORT). The proxy's PROXY_PORT must name it (the chart's default list 19100,19182,9182 ends with 9182). 19100 and 19182 are refused: AKS's own windows_exporter uses them, and where it runs there is nothing to install (deploy/README.md)."
  type        = number
  default     = 9182

  validation {
    condition     = var.listen_port >= 1 && var.listen_port <= 65535 && floor(var.listen_port) == var.listen_port
    error_message = "listen_port must be an integer from 1 to 65535."
  }
  validation {
    condition     = !contains([19100, 19182], var.listen_port)
    error_message = "listen_port must not be 19100 or 19182: AKS's own windows_exporter listens there (node image and VM extension), so the MSI's service would fail to bind on those nodes; use the native exporter instead (deploy/README.md), or another port such as 9182."
  }
}

variable "web_config_file" {
  description = "Absolute path, on the node, of an existing exporter-toolkit web config (TLS, basic auth) for windows_exporter, passed as --web.config.file through the MSI property EXTRA_FLAGS. It and the certificate and key files it names must exist before the install: the MSI starts the service and rolls back when it fails. null: none, unless web_config gives the content. Set one of web_config_file and web_config, not both."
  type        = string
  default     = null

  validation {
    condition     = var.web_config_file == null || can(regex("^[A-Za-z]:\\\\[^\"*?<>|:]+\\.ya?ml$", var.web_config_file))
    error_message = "web_config_file must be an absolute Windows path to a .yml or .yaml file, such as C:\\ProgramData\\windows_exporter\\web-config.yml, without quotes (a relative path fails under the service)."
  }
}

variable "web_config" {
  description = "Content (YAML) of an exporter-toolkit web config for windows_exporter: tls_server_config, http_server_config and/or basic_auth_users. The install script writes it as UTF-8 without a byte-order mark to C:\\ProgramData\\windows_exporter-install\\web-config.yml before installing and passes that path as --web.config.file (EXTRA_FLAGS). Certificate and key files it names must already be on the node. Sent in the extension's protected settings; basic_auth_users holds bcrypt hashes, never passwords. null: none. Set one of web_config and web_config_file, not both."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.web_config == null || can(keys(yamldecode(var.web_config)))
    error_message = "web_config must be a YAML mapping (an exporter-toolkit web config)."
  }
  validation {
    condition     = var.web_config == null || try(length(setsubtract(keys(yamldecode(var.web_config)), ["tls_server_config", "http_server_config", "basic_auth_users"])) == 0, false)
    error_message = "web_config may only have the exporter-toolkit keys tls_server_config, http_server_config and basic_auth_users."
  }
  validation {
    condition     = var.web_config == null || !startswith(coalesce(var.web_config, " "), "\ufeff")
    error_message = "web_config must not start with a byte-order mark: windows_exporter cannot read the file then (windows_exporter#2274)."
  }
}

variable "enabled_collectors" {
  description = "windows_exporter collectors to enable (MSI property ENABLED_COLLECTORS). Must include those the Prometheus rules and PROXY_NODE_METRICS read: cpu, logical_disk, memory, net, os, pagefile, system, time."
  type        = list(string)
  default     = ["cpu", "memory", "logical_disk", "net", "os", "system", "pagefile", "time", "container"]

  validation {
    condition     = alltrue([for c in var.enabled_collectors : can(regex("^[a-z][a-z0-9_]*$", c))])
    error_message = "Collector names are lower case letters, digits and underscores (for example logical_disk)."
  }
  validation {
    condition     = length(distinct(var.enabled_collectors)) == length(var.enabled_collectors)
    error_message = "enabled_collectors must not repeat a collector."
  }
  validation {
    condition     = length(setsubtract(["cpu", "logical_disk", "memory", "net", "os", "pagefile", "system", "time"], var.enabled_collectors)) == 0
    error_message = "enabled_collectors must include cpu, logical_disk, memory, net, os, pagefile, system and time (read by deploy/prometheus and PROXY_NODE_METRICS)."
  }
}

variable "firewall_exception" {
  description = "Ask the MSI to add a Windows Firewall rule for listen_port (ADDLOCAL=FirewallException from v0.29, ADD_FIREWALL_EXCEPTION=yes in 0.26-0.28). Without it nothing outside the node reaches the exporter."
  type        = bool
  default     = true
}

variable "firewall_remote_addresses" {
  description = "Source addresses the firewall rule allows (MSI property REMOTE_ADDR), as CIDRs. Use the cluster's pod CIDR(s) so only pods (the proxy) can scrape the node."
  type        = list(string)

  validation {
    condition     = length(var.firewall_remote_addresses) > 0
    error_message = "firewall_remote_addresses must list at least one CIDR (the pod CIDR); an empty list would open the port to any source."
  }
  validation {
    condition     = alltrue([for a in var.firewall_remote_addresses : can(cidrhost(a, 0))])
    error_message = "Each firewall_remote_addresses entry must be a CIDR such as 10.244.0.0/16."
  }
}

variable "extension_name" {
  description = "Name of the VMSS extension."
  type        = string
  default     = "windows-exporter"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", var.extension_name)) && var.extension_name != "vmssCSE"
    error_message = "extension_name must be 1-64 letters, digits, '.', '_' or '-', and not AKS's own vmssCSE."
  }
}

variable "dsc_type_handler_version" {
  description = "Version of the Microsoft.Powershell DSC extension handler (minor upgrades are automatic)."
  type        = string
  default     = "2.83"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.dsc_type_handler_version))
    error_message = "dsc_type_handler_version must look like 2.83."
  }
}

variable "force_update_tag" {
  description = "Change this value to make the extension run again on every instance with unchanged settings (for example after someone uninstalled the exporter by hand)."
  type        = string
  default     = ""
}

variable "storage_account_name" {
  description = "Existing storage account the DSC package (zip of scripts/) is uploaded to. Nodes download it with a read-only SAS."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]{3,24}$", var.storage_account_name))
    error_message = "storage_account_name must be 3-24 lower case letters and digits."
  }
}

variable "storage_account_resource_group_name" {
  description = "Resource group of storage_account_name."
  type        = string

  validation {
    condition     = length(var.storage_account_resource_group_name) > 0
    error_message = "storage_account_resource_group_name must not be empty."
  }
}

variable "storage_container_name" {
  description = "Existing private blob container in storage_account_name for the DSC package."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9](-?[a-z0-9]){2,62}$", var.storage_container_name))
    error_message = "storage_container_name must be 3-63 lower case letters, digits and single hyphens."
  }
}

variable "package_sas_expiry" {
  description = "Expiry (RFC 3339, UTC) of the read-only SAS nodes use to download the DSC package. New instances (scale-out, reimage) download it again, so keep it well in the future and re-apply before it passes."
  type        = string

  validation {
    condition     = can(formatdate("YYYY-MM-DD", var.package_sas_expiry)) && can(regex("Z$", var.package_sas_expiry))
    error_message = "package_sas_expiry must be an RFC 3339 UTC timestamp such as 2027-01-01T00:00:00Z."
  }
}
