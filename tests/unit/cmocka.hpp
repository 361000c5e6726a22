// CMocka needs these C headers, in this order, before its own.
#pragma once
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <setjmp.h>
extern "C" {
#include <cmocka.h>
}
