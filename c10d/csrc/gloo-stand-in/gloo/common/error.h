// Stand-in: see ../README.md. ProcessGroupGloo.hpp includes this but names nothing from it.
#pragma once
