// Where a tensor's storage lives.
#pragma once
#include <cstdint>
#include <string>

namespace fg {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::cuda, i}; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

// True when flashgrad was built with CUDA and a CUDA device is present.
bool cuda_available();
// How many CUDA devices this process sees (0 without CUDA or without a driver).
int cuda_device_count();
// Parses "cpu", "cuda", "cuda:0", or "auto" (cuda when available, else cpu).
Device device_from_string(const std::string& s);

}  // namespace fg
