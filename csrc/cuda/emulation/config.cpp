// Reads the emulated device's settings (config.h) from the environment, once.
#include "config.h"

#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace axemu {

namespace {

long env_int(const char* name, long fallback, long lo, long hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi) {
    throw std::invalid_argument(std::string("emulated CUDA device: ") + name + "=" + v + " is not a whole number in [" +
                                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return x;
}

std::vector<Schedule> env_schedules() {
  const char* v = std::getenv("AXEMU_SCHEDULES");
  if (!v || !*v) return {Schedule::Forward, Schedule::Reverse};
  std::vector<Schedule> out;
  std::stringstream in(v);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item == "forward") out.push_back(Schedule::Forward);
    else if (item == "reverse") out.push_back(Schedule::Reverse);
    else if (item == "shuffled") out.push_back(Schedule::Shuffled);
    else
      throw std::invalid_argument("emulated CUDA device: AXEMU_SCHEDULES names '" + item +
                                  "'; expected a comma-separated list of forward, reverse, shuffled");
  }
  if (out.empty()) throw std::invalid_argument("emulated CUDA device: AXEMU_SCHEDULES is empty");
  return out;
}

Config load() {
  Config c;
  c.devices = static_cast<int>(env_int("AXEMU_DEVICES", 2, 0, 16));
  c.memory_bytes = static_cast<size_t>(env_int("AXEMU_MEMORY_MB", 2048, 1, 1 << 20)) << 20;
  c.sms = static_cast<int>(env_int("AXEMU_SMS", 4, 1, 1024));
  const long cores = static_cast<long>(std::thread::hardware_concurrency());
  c.workers = static_cast<int>(env_int("AXEMU_WORKERS", cores > 0 ? std::min(cores, 16L) : 1, 1, 256));
  c.schedules = env_schedules();
  c.race_check_bytes = static_cast<size_t>(env_int("AXEMU_RACE_CHECK_MB", 64, 0, 1 << 20)) << 20;
  const char* streams = std::getenv("AXEMU_STREAMS");
  if (streams && *streams) {
    const std::string s = streams;
    if (s != "deferred" && s != "eager")
      throw std::invalid_argument("emulated CUDA device: AXEMU_STREAMS=" + s + "; expected deferred or eager");
    c.deferred = s == "deferred";
  }
  c.poison = env_int("AXEMU_POISON", 1, 0, 1) != 0;
  c.peer = env_int("AXEMU_PEER", 1, 0, 1) != 0;
  c.seed = static_cast<uint64_t>(env_int("AXEMU_SEED", 1, 0, 0x7fffffffL));
  return c;
}

}  // namespace

const Config& config() {
  static const Config c = load();
  return c;
}

std::string config_summary() {
  const Config& c = config();
  std::ostringstream out;
  out << c.devices << " device(s) x " << (c.memory_bytes >> 20) << " MiB, " << c.sms << " SMs, " << c.workers
      << " worker thread(s), schedules ";
  for (size_t i = 0; i < c.schedules.size(); ++i) out << (i ? "+" : "") << schedule_name(c.schedules[i]);
  out << ", streams " << (c.deferred ? "deferred" : "eager") << ", poison " << (c.poison ? "on" : "off");
#if defined(__SANITIZE_ADDRESS__)
  out << ", AddressSanitizer";
#endif
  return out.str();
}

}  // namespace axemu
