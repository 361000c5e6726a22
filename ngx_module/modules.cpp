// The module list nginx's load_module reads from a dynamic module.
#include "ngx_includes.hpp"

extern ngx_module_t ngx_http_paygate_module;

extern "C" {
// load_module looks these up by name, so they are exported despite hidden visibility.
__attribute__((visibility("default"))) ngx_module_t* ngx_modules[] = {&ngx_http_paygate_module, nullptr};
__attribute__((visibility("default"))) char* ngx_module_names[] = {const_cast<char*>("ngx_http_paygate_module"),
                                                                   nullptr};
__attribute__((visibility("default"))) char* ngx_module_order[] = {nullptr};
}
